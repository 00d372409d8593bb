"""WebDataset tar shards (what img2dataset writes; how LAION, DataComp and most web-scale image sets ship).

``shards`` names the training shards (a brace pattern ``train-{000000..000099}.tar``, a glob, a folder of
``.tar`` files, or a list of these; relative to ``root`` when given). Samples are grouped and read as
:mod:`clinfonce.data.shards` says: the sample key is the image's ``path`` (in cluster files, embeddings and
reports), every field of its ``.json`` is a column of the dataset's table, ``.txt`` is ``caption`` and
``.cls`` is ``label``. So ``clusters.attributes``, ``clusters.tags`` and everything in stage 1 work as for a
table, and stage 1 reads only those metadata members: no image is decoded before training.

- Label: ``label_col`` (``"auto"``: ``label`` if a sample has one, from ``.cls`` or the json); integral
  numbers are class names too, as in a table.
- Split: ``test_shards`` (and ``val_shards``) name shards of those splits; else ``split_col`` (``"auto"``: a
  ``split`` field if present, values as in a table); else a seeded ``test_fraction`` of each class by key.
- Bad data: a truncated shard, or a sample without an image, is an error naming the shard and the member;
  with ``skip_bad`` such samples are left out and counted. A corrupt image is found when it is read (an
  error naming the shard and the member), or up front with ``check_files`` (which decodes every image; then
  ``skip_bad`` leaves it out too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import UserImagesOptions, finish_dataset, screen_by_loading
from clinfonce.data.files import check_image_options, size_pair
from clinfonce.data.memory import returning_freed_memory
from clinfonce.data.shards import ShardImageLoader, index_shards, shard_paths
from clinfonce.data.sources.table import RESERVED_COLUMNS, auto_column, label_names
from clinfonce.data.splits import split_cells_or_seeded
from clinfonce.errors import InputError

_SHARD_OPTIONS = {"train": "shards", "test": "test_shards", "val": "val_shards"}
_SAMPLE = "__sample"  # the table's private column: each row's sample in the shard index


@dataclass(kw_only=True)
class WebDatasetOptions(UserImagesOptions):
    """Options of WebDataset tar shards."""

    root: str | None = field(
        default=None, metadata={"help": "the folder relative shard names are in (null: the current folder)"}
    )
    shards: list[str] = field(
        metadata={"help": "training shards: a brace pattern (train-{000..099}.tar), a glob, a folder, a list"}
    )
    test_shards: list[str] = field(default_factory=list, metadata={"help": "shards of the test split"})
    val_shards: list[str] = field(default_factory=list, metadata={"help": "shards of the validation split"})
    label_col: str | None = field(
        default="auto", metadata={"help": "the field of class names; auto: 'label' if present; null: none"}
    )
    split_col: str | None = field(
        default="auto",
        metadata={"help": "the field of splits; auto: 'split' if present (without test_shards); null: none"},
    )
    attributes: list[str] = field(
        default_factory=list, metadata={"help": "the dataset's own attribute fields (for stage 1)"}
    )
    tags: list[str] = field(
        default_factory=list, metadata={"help": "the dataset's own tag fields (lists or delimited strings)"}
    )
    check_files: bool = field(
        default=False,
        metadata={"help": "decode every image up front (needed by skip_bad for corrupt images)"},
    )


@returning_freed_memory()  # what building the table freed is not kept while training allocates
def load(options: WebDatasetOptions, skip_bad: bool = False) -> ImageDataset:
    """The samples of the shards (rules in the module docstring).

    Raises:
        InputError: a shard is missing or not a tar file; a truncated shard, a sample without an image or
            with bad metadata (unless ``skip_bad``); a key in two samples; a named field is absent; a field
            named ``path``; a bad split value.
    """
    check_image_options(options.channels, options.resize)
    root = Path(options.root) if options.root is not None else Path()
    where = {"train": options.shards, "test": options.test_shards, "val": options.val_shards}
    split_of_shard: list[str] = []
    paths: list[Path] = []
    for split, specs in where.items():
        if specs:
            found = shard_paths([str(root / spec) for spec in specs], f"data.options.{_SHARD_OPTIONS[split]}")
            paths += found
            split_of_shard += [split] * len(found)
    index = index_shards(paths, skip_bad)
    if len(index.keys) == 0:
        raise InputError(f"{options.shards}: the shards hold no sample with an image")
    frame = index.metadata
    clash = sorted(set(frame.columns) & {"path"})
    if clash:
        raise InputError(f"{paths[0]}: a json field is named {clash[0]!r}, which is the sample key's column")
    label_col = auto_column(options.label_col, "label", frame)
    split_col = None if options.test_shards else auto_column(options.split_col, "split", frame)
    missing = [
        name
        for name in [*options.attributes, *options.tags, label_col, split_col]
        if name and name not in frame
    ]
    if missing:
        raise InputError(
            f"{options.shards}: no sample has the field(s) {missing}; fields: {list(frame.columns)}"
        )
    table = pd.DataFrame({"path": index.keys, "class": label_names(frame[label_col]) if label_col else None})
    if options.test_shards:
        table["split"] = np.asarray(split_of_shard, dtype=object)[index.shard]
    else:
        table["split"] = split_cells_or_seeded(
            table,
            frame[split_col] if split_col else None,
            lambda i: f"{paths[index.shard[i]]}:{index.keys[i]}, field {split_col!r}",
            options.test_fraction,
            options.seed,
        )
    for column in frame.columns:
        if column not in {label_col, split_col, *RESERVED_COLUMNS}:
            table[column] = frame[column]
    table[_SAMPLE] = np.arange(len(table))
    aux = AuxInfo(attributes=tuple(options.attributes), tags=tuple(options.tags))

    def loader(table: pd.DataFrame) -> tuple[ShardImageLoader, pd.DataFrame]:
        rows = table[_SAMPLE].to_numpy()
        made = index.loader(
            size_pair(options.image_size), options.channels, options.resize, options.max_pixels, rows
        )
        return made, table.drop(columns=_SAMPLE)

    return finish_dataset(
        "webdataset",
        table,
        options,
        screen=lambda table, rows: screen_by_loading(loader, table, options.check_files, skip_bad),
        loader=loader,
        mean=options.mean,
        std=options.std,
        aux=aux,
        root=None,
        source=str(options.shards),
        skipped=index.skipped,
    )


__all__ = ["WebDatasetOptions", "load"]
