"""Images listed in a metadata table (``.csv``, ``.tsv``, whitespace ``.txt`` or ``.parquet``).

Each row is one image: ``path_col`` holds its path relative to ``root`` (default: the table's folder). A
path that leaves ``root`` (absolute, ``..``, or a symbolic link pointing outside) is an error naming the
row (:func:`~clinfonce.data.paths.safe_path`); so is a missing image (unless ``skip_bad``), and so is an
image listed twice (the same path once normalised: ``a.png`` and ``./a.png``), naming both rows. Different
paths to the same file (links) in different splits are an error too
(:func:`~clinfonce.data.file_backed.check_split_leaks`). The table is read by
:func:`~clinfonce.data.tables.read_table` (UTF-8 unless ``encoding`` says otherwise, the ``.csv`` delimiter
detected from the header line).

- Label: ``label_col`` (``"auto"``: the column ``label`` if the table has one, else none: label -1).
  Integral numbers are class names too (``"3"``), sorted as text like all class names. Class names are
  stripped of surrounding whitespace (``" dog"`` is ``dog``); an empty or blank cell means no label.
- Split: ``split_col`` (``"auto"``: the column ``split`` if present), with the names of
  :func:`~clinfonce.data.splits.normalise_split`; without one, a seeded ``test_fraction`` stratified by
  label (rule: :mod:`clinfonce.data.splits`).
- Auxiliary information: ``attributes`` and ``tags`` columns (the dataset's own, used when stage 1 names
  none), and a hierarchy: ``hierarchy="wordnet"`` when the labels are WordNet ids, or ``hierarchy_col`` giving per row
  the ancestors of the row's class, root first, separated by ``hierarchy_sep`` (every row of a class must
  agree). Every other column of the table is copied into the dataset's table as well, so stage 1 may name
  any of them (``clinfonce clusters --dataset table --attributes a,b``).
- Normalisation: ImageNet's statistics unless ``mean`` / ``std`` say otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset, is_missing
from clinfonce.data.file_backed import UserImagesOptions, check_wordnet_classes, file_dataset
from clinfonce.data.options import OptionError, check_choice
from clinfonce.data.paths import existing_dir, safe_path
from clinfonce.data.splits import split_cells_or_seeded
from clinfonce.data.tables import check_encoding, read_table, require_columns
from clinfonce.errors import InputError

#: The dataset's own columns: auxiliary columns may not take these names.
RESERVED_COLUMNS = ("path", "label", "split")


@dataclass(kw_only=True)
class TableOptions(UserImagesOptions):
    """Options of a metadata table of image paths."""

    root: str | None = field(
        default=None, metadata={"help": "the folder image paths are relative to (null: the table's folder)"}
    )
    table: str = field(
        metadata={"help": "the metadata table: .csv, .tsv, whitespace .txt or .parquet, one row per image"}
    )
    path_col: str = field(default="path", metadata={"help": "the column of image paths, relative to root"})
    label_col: str | None = field(
        default="auto",
        metadata={"help": "the column of class names; auto: 'label' if present; null: unlabelled"},
    )
    split_col: str | None = field(
        default="auto",
        metadata={
            "help": "the column of splits (train/val/test); auto: 'split' if present; null: a seeded split"
        },
    )
    attributes: list[str] = field(
        default_factory=list,
        metadata={"help": "the dataset's own attribute columns (what stage 1 uses unless it names others)"},
    )
    tags: list[str] = field(
        default_factory=list,
        metadata={"help": "the dataset's own tag columns (lists or delimited strings)"},
    )
    hierarchy: str | None = field(
        default=None, metadata={"help": "'wordnet' when the labels are WordNet ids"}
    )
    hierarchy_col: str | None = field(
        default=None, metadata={"help": "a column of each row's class ancestors, root first"}
    )
    hierarchy_sep: str = field(default="/", metadata={"help": "separator of the hierarchy_col values"})
    encoding: str | None = field(
        default=None,
        metadata={
            "help": "text encoding of a delimited table, e.g. latin-1 (null: UTF-8, or UTF-16 with a BOM)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("hierarchy", self.hierarchy, (None, "wordnet"))
        if self.hierarchy is not None and self.hierarchy_col is not None:
            raise OptionError("hierarchy_col", "and hierarchy='wordnet' exclude each other: give one of them")
        if not self.hierarchy_sep:
            raise OptionError("hierarchy_sep", "must not be empty")
        if self.encoding is not None:
            try:
                check_encoding(self.encoding)
            except InputError as error:
                raise OptionError("encoding", str(error)) from None


def load(options: TableOptions, skip_bad: bool = False) -> ImageDataset:
    """The images a metadata table lists (rules in the module docstring).

    Args:
        options: the table, its columns and how to read the images.
        skip_bad: leave unreadable or missing images out (listed in ``skipped``) instead of failing.

    Raises:
        InputError: the table cannot be read; a named column is absent; an auxiliary column is named
            ``path``, ``label`` or ``split``; a missing / escaping path; an image listed twice, or the same
            file in two splits; a bad split value; inconsistent hierarchy values; a bad image (unless
            ``skip_bad``).
    """
    table_path = Path(options.table)
    source = str(table_path)
    attributes, tags = list(options.attributes), list(options.tags)
    frame = read_table(table_path, tag_columns=tags, encoding=options.encoding)
    root = existing_dir(table_path.parent if options.root is None else options.root, "image root")
    label_col = auto_column(options.label_col, "label", frame)
    split_col = auto_column(options.split_col, "split", frame)
    hierarchy_col = options.hierarchy_col
    named = [options.path_col, *([label_col] if label_col else []), *([split_col] if split_col else [])]
    require_columns(frame, [*named, *attributes, *tags, *([hierarchy_col] if hierarchy_col else [])], source)
    clash = sorted(set(RESERVED_COLUMNS) & {*attributes, *tags})
    if clash:
        raise InputError(f"{source}: auxiliary column(s) {clash} clash with the dataset's own columns")
    real_root = os.path.realpath(root)
    paths = [
        safe_path(root, real_root, value, f"{source}: row {i}")
        for i, value in enumerate(frame[options.path_col])
    ]
    classes = label_names(frame[label_col]) if label_col else [None] * len(frame)
    table = pd.DataFrame({"path": paths, "class": pd.Series(classes, dtype=object)})
    table["split"] = split_cells_or_seeded(
        table,
        frame[split_col] if split_col else None,
        lambda i: f"{source}: row {i}, column {split_col!r}",
        options.test_fraction,
        options.seed,
    )
    skipped_columns = {*named, *RESERVED_COLUMNS, *table.columns, *([hierarchy_col] if hierarchy_col else [])}
    for column in dict.fromkeys([*attributes, *tags, *frame.columns]):
        if column in attributes or column in tags or column not in skipped_columns:
            table[column] = frame[column].reset_index(drop=True)
    parents: str | dict[str, str | None] | None = None
    if hierarchy_col:
        parents = _hierarchy_from_column(
            classes, frame[hierarchy_col], options.hierarchy_sep, source, hierarchy_col
        )
    elif options.hierarchy == "wordnet":
        check_wordnet_classes(sorted({name for name in classes if name is not None}), source)
        parents = "wordnet"
    aux = AuxInfo(
        attributes=tuple(dict.fromkeys(attributes)), tags=tuple(dict.fromkeys(tags)), hierarchy=parents
    )
    _check_unique(paths, source, options.path_col)  # after the per-cell checks, which name one row
    return file_dataset(
        "table",
        table,
        root,
        options,
        mean=options.mean,
        std=options.std,
        aux=aux,
        skip_bad=skip_bad,
        source=source,
        rows=list(range(len(table))),
    )


def _check_unique(paths: Sequence[str], source: str, column: str) -> None:
    """:class:`InputError` naming both rows if a (normalised) path is listed twice."""
    first: dict[str, int] = {}
    for row, path in enumerate(paths):
        if first.setdefault(path, row) != row:
            raise InputError(
                f"{source}: rows {first[path]} and {row} list the same image {path!r} (column {column!r}); "
                "list every image once"
            )


def label_names(column: pd.Series) -> np.ndarray:
    """``object [N]``: class names of a label column: text, stripped; integral numbers without a trailing
    ``.0``; NaN or a blank cell -> None. Each distinct value is converted once and its name shared by its
    rows (a million-row column holds a few class-name strings, not a million)."""
    values = column
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and (finite == np.round(finite)).all():
            values = values.astype("Int64")
    codes, uniques = pd.factorize(values)
    names = np.array([str(value).strip() or None for value in uniques] + [None], dtype=object)
    return names[codes]  # code -1 (a missing cell) picks the trailing None


def auto_column(name: str | None, default: str, frame: pd.DataFrame) -> str | None:
    """``name``, with ``"auto"`` meaning ``default`` if ``frame`` has that column, else ``None``."""
    if name != "auto":
        return name
    return default if default in frame.columns else None


def _hierarchy_from_column(
    classes: Sequence[str | None], column: pd.Series, sep: str, source: str, name: str
) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    seen: dict[str, tuple[int, str | None]] = {}

    def link(child: str, parent: str | None, row: int) -> None:
        if child in seen and seen[child][1] != parent:
            first_row, first = seen[child]
            raise InputError(
                f"{source}: row {row}, column {name!r}: {child!r} has parent {parent!r} here but "
                f"{first!r} in row {first_row}"
            )
        seen.setdefault(child, (row, parent))
        parents[child] = parent

    for row, (cls, value) in enumerate(zip(classes, column.tolist(), strict=True)):
        if cls is None or is_missing(value):
            continue
        chain = [part.strip() for part in str(value).split(sep) if part.strip()]
        if not chain:
            continue
        for i, node in enumerate(chain):
            link(node, chain[i - 1] if i else None, row)
        link(cls, chain[-1], row)
    for cls in classes:
        if cls is not None:
            parents.setdefault(cls, None)
    return parents
