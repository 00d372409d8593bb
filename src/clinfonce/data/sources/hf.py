"""Hugging Face datasets: a ``save_to_disk`` folder (a ``Dataset`` or a ``DatasetDict`` of splits), or Parquet
files with an image column (what ``Dataset.to_parquet`` and the Hub's Parquet exports write).

``path`` is the folder, or a Parquet file, a folder of ``.parquet`` files or a glob. Parquet is read with
``datasets.Dataset.from_parquet``, which converts it once into an Arrow cache (``cache_dir``, default
Hugging Face's); the Arrow data is memory-mapped, so images are read by row, in any order, without holding
the dataset in memory. Nothing is downloaded (the library runs offline).

- Images: ``image_col``, an ``Image`` feature (its bytes, or its path when the bytes are not stored),
  raw bytes, or a path relative to ``root``; decoded with the same loader and checks as image files.
- Label: ``label_col`` (``"auto"``: ``label`` if present); a ``ClassLabel`` feature gives its class names.
- Splits: a ``DatasetDict``'s splits by name: ``train_split``, ``test_split`` (``"auto"``: ``test``, else
  ``validation``), ``val_split``; a single dataset or Parquet files are all training data, and a seeded
  ``test_fraction`` of each class is the test split.
- Identifier: ``id_col`` names each image (its ``path`` in cluster files and embeddings, what
  ``data.options.metadata`` joins on); without it, ``<split>/<row>``.
- Every other column is a column of the dataset's table, for stage 1 (``attributes`` and ``tags`` name the
  dataset's own).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import UserImagesOptions, finish_dataset, screen_by_loading
from clinfonce.data.files import (
    DEFAULT_MAX_PIXELS,
    ImageFileError,
    check_image_options,
    decode_image,
    open_image,
    size_pair,
    to_array,
)
from clinfonce.data.sources.table import RESERVED_COLUMNS, label_names
from clinfonce.data.splits import stratified_pick
from clinfonce.errors import InputError

INSTALL = "pip install 'clinfonce[hf]'"
_ROW = "__row"  # the table's private column: each row's row in the concatenated dataset


@dataclass(kw_only=True)
class HfOptions(UserImagesOptions):
    """Options of a Hugging Face dataset on disk."""

    root: str | None = field(
        default=None, metadata={"help": "the folder image paths in the data are relative to (null: path's)"}
    )
    path: str = field(metadata={"help": "a save_to_disk folder, or Parquet files (a file, a folder, a glob)"})
    image_col: str = field(default="image", metadata={"help": "the column of images (Image, bytes or paths)"})
    id_col: str | None = field(
        default=None,
        metadata={"help": "a column naming each image (its path in outputs); null: <split>/<row>"},
    )
    label_col: str | None = field(
        default="auto", metadata={"help": "the column of classes; auto: 'label' if present; null: none"}
    )
    train_split: str = field(default="train", metadata={"help": "the DatasetDict split to train on"})
    test_split: str | None = field(
        default="auto", metadata={"help": "the DatasetDict split to test on; auto: test, else validation"}
    )
    val_split: str | None = field(default=None, metadata={"help": "a DatasetDict split for validation"})
    attributes: list[str] = field(
        default_factory=list, metadata={"help": "the dataset's own attribute columns"}
    )
    tags: list[str] = field(default_factory=list, metadata={"help": "the dataset's own tag columns"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "where Parquet is converted to Arrow (null: Hugging Face's cache)"}
    )
    check_files: bool = field(
        default=False,
        metadata={"help": "decode every image up front (needed by skip_bad for corrupt images)"},
    )


def load(options: HfOptions, skip_bad: bool = False) -> ImageDataset:
    """The dataset at ``options.path`` (rules in the module docstring).

    Raises:
        InputError: the library is missing (naming the extra), the path holds no dataset, a named split or
            column is absent, an auxiliary column is named ``path``, ``label`` or ``split``; a bad image with
            ``check_files`` (unless ``skip_bad``).
    """
    check_image_options(options.channels, options.resize)
    datasets = _library()
    parts = _splits(datasets, options)
    first = next(iter(parts.values()))
    if options.image_col not in first.column_names:
        raise InputError(f"{options.path}: no column {options.image_col!r}; columns: {first.column_names}")
    label_col = options.label_col
    if label_col == "auto":
        label_col = "label" if "label" in first.column_names else None
    names = list(first.features[label_col].names) if _is_class_label(first, label_col) else None
    joined = datasets.concatenate_datasets(list(parts.values())) if len(parts) > 1 else first
    frame = joined.remove_columns(options.image_col).to_pandas()
    missing = [c for c in [*options.attributes, *options.tags, label_col] if c and c not in frame.columns]
    if missing:
        raise InputError(f"{options.path}: no column(s) {missing}; columns: {list(frame.columns)}")
    clash = sorted(set(RESERVED_COLUMNS) & {*options.attributes, *options.tags})
    if clash:
        raise InputError(f"{options.path}: auxiliary column(s) {clash} clash with the dataset's own columns")
    split = np.concatenate([[name] * len(part) for name, part in parts.items()])
    if options.id_col is not None:
        if options.id_col not in frame.columns:
            raise InputError(f"{options.path}: no column {options.id_col!r} (id_col)")
        ids = frame.pop(options.id_col).astype(str)
        repeated = ids.duplicated()
        if repeated.any():
            raise InputError(
                f"{options.path}: id {ids[repeated].iloc[0]!r} names two rows (id_col {options.id_col!r})"
            )
        paths = ids.tolist()
    else:
        paths = [f"{name}/{i}" for name, part in parts.items() for i in range(len(part))]
    if "path" in frame.columns:
        raise InputError(f"{options.path}: a column is named 'path', which is the image identifier's column")
    table = pd.DataFrame({"path": paths})
    if label_col is not None and names is not None:
        table["class"] = [None if v is None or v < 0 else names[int(v)] for v in frame[label_col].tolist()]
    else:
        table["class"] = label_names(frame[label_col]) if label_col else None
    table["split"] = split
    if "test" not in parts and options.test_fraction:
        test = stratified_pick(table["class"], table["path"], options.test_fraction, options.seed)
        table.loc[test, "split"] = "test"
    for column in frame.columns:
        if column != label_col:
            table[column] = frame[column]
    table[_ROW] = np.arange(len(table))
    images = joined.select_columns([options.image_col])
    if isinstance(images.features[options.image_col], datasets.Image):
        images = images.cast_column(options.image_col, datasets.Image(decode=False))
    base = Path(options.root) if options.root is not None else _base_folder(options.path)

    def loader(table: pd.DataFrame) -> tuple[HfImageLoader, pd.DataFrame]:
        rows = table[_ROW].to_numpy()
        made = HfImageLoader(images, options.image_col, rows, table["path"].tolist(), base, options)
        return made, table.drop(columns=_ROW)

    return finish_dataset(
        "hf",
        table,
        options,
        screen=lambda table, rows: screen_by_loading(loader, table, options.check_files, skip_bad),
        loader=loader,
        mean=options.mean,
        std=options.std,
        aux=AuxInfo(attributes=tuple(options.attributes), tags=tuple(options.tags)),
        root=None,
        source=options.path,
    )


class HfImageLoader:
    """``loader(row) -> uint8 [C, H, W]``: the image of table row ``row`` from the memory-mapped dataset
    (picklable: worker processes map the same Arrow files)."""

    def __init__(
        self, images: Any, column: str, rows: np.ndarray, names: list[str], base: Path, options: HfOptions
    ) -> None:
        self.images, self.column, self.rows, self.names, self.base = images, column, rows, names, base
        self.image_size = size_pair(options.image_size)
        self.channels, self.resize = options.channels, options.resize
        self.max_pixels = options.max_pixels if options.max_pixels is not None else DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, row: int) -> torch.Tensor:
        value = self.images[int(self.rows[row])][self.column]
        name = self.names[row]
        height, width = self.image_size
        if isinstance(value, dict):  # an Image feature: its bytes, else its file
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            image = decode_image(bytes(value), name, self.max_pixels, (width, height))
        elif isinstance(value, str):
            image = open_image(self.base / value, self.max_pixels, (width, height))
        else:
            raise ImageFileError(name, f"no image in column {self.column!r} (got {type(value).__name__})")
        try:
            return torch.from_numpy(to_array(image, self.image_size, self.channels, self.resize, name))
        finally:
            image.close()


def _library():
    try:
        import datasets
    except ModuleNotFoundError:
        raise InputError(f"data.name hf needs the datasets library: {INSTALL}") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()
    return datasets


def _splits(datasets, options: HfOptions) -> dict[str, Any]:
    """``{"train": Dataset, "test": ..., "val": ...}`` of what ``options.path`` holds."""
    path = Path(options.path)
    if path.is_dir() and not any(path.glob("*.parquet")):
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise InputError(f"{path}: not a save_to_disk folder of a dataset ({error})") from None
        if not isinstance(loaded, datasets.DatasetDict):
            return {"train": loaded}
        available = list(loaded)
        chosen = {"train": options.train_split, "val": options.val_split}
        test = options.test_split
        if test == "auto":
            test = next((name for name in ("test", "validation") if name in loaded), None)
        chosen["test"] = test
        for role, name in chosen.items():
            if name is not None and name not in loaded:
                raise InputError(f"{path}: no split {name!r} ({role}); splits: {available}")
        return {role: loaded[name] for role, name in chosen.items() if name is not None}
    files = sorted(glob.glob(str(path / "*.parquet"))) if path.is_dir() else sorted(glob.glob(str(path)))
    if not files:
        raise InputError(f"{path}: no dataset here (a save_to_disk folder, or Parquet files)")
    return {"train": datasets.Dataset.from_parquet(files, cache_dir=options.cache_dir)}


def _is_class_label(dataset: Any, column: str | None) -> bool:
    feature = dataset.features.get(column) if column else None
    return feature is not None and type(feature).__name__ == "ClassLabel"


def _base_folder(path: str) -> Path:
    folder = Path(path)
    return folder if folder.is_dir() else folder.parent


__all__ = ["HfOptions", "load"]
