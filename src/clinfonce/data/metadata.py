"""More auxiliary columns for any dataset: a metadata table joined to its images by ``path``.

Users often hold the images in one place (a registered dataset, an image folder) and cheap metadata in
another (tags from a web crawl, attributes from a catalogue). ``data.options.metadata`` names such a table
(CSV, TSV, Parquet: :func:`~clinfonce.data.tables.read_table`) with a ``path`` column matching the
dataset's ``path`` (``clinfonce data check`` and ``embed``'s ``index.csv`` show them); every other column
of it becomes a column of the dataset's table, for ``clusters.tags`` / ``clusters.attributes``.

An image without a row gets missing values (stage 1 never guesses them: a singleton cluster, or a zero tag
vector); rows that match no image (say, of images ``train_per_class`` left out) are not used. Both counts
are in the dataset's notes (reports, ``data check``), so nothing goes unseen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError


def read_metadata(path: str) -> pd.DataFrame:
    """The metadata table at ``path``, checked (read before the images, so a wrong table stops at once).

    Raises:
        InputError: the table cannot be read, has no ``path`` column, or lists a path twice (naming its
            rows).
    """
    extra = read_table(path)
    require_columns(extra, ["path"], path)
    keys = extra["path"].astype(str)
    repeated = keys.duplicated(keep=False)
    if repeated.any():
        rows = np.flatnonzero(repeated.to_numpy())[:2].tolist()
        raise InputError(f"{path}: path {keys.iloc[rows[0]]!r} is listed more than once (rows {rows})")
    return extra


def join_metadata(dataset: ImageDataset, extra: pd.DataFrame, path: str) -> ImageDataset:
    """``dataset`` with the columns of ``extra`` (:func:`read_metadata` of ``path``) joined on ``path``
    (see the module docstring).

    Raises:
        InputError: the dataset has no paths, or ``extra`` has a column the dataset's table has already
            (naming it).
    """
    if "path" not in dataset.table.columns:
        raise InputError(f"data.options.metadata: dataset {dataset.name!r} has no image paths to join on")
    keys = extra["path"].astype(str)
    clash = [column for column in extra.columns if column != "path" and column in dataset.table.columns]
    if clash:
        raise InputError(
            f"{path}: column(s) {clash} are columns of dataset {dataset.name!r} already; rename them"
        )
    position = pd.Index(keys).get_indexer(dataset.table["path"].astype(str))  # -1: no row for the image
    found = position >= 0
    table = dataset.table.copy()
    columns = [column for column in extra.columns if column != "path"]
    take = np.where(found, position, 0)
    for column in columns:
        table[column] = pd.Series(extra[column].to_numpy()[take], index=table.index).where(found)
    unused = len(extra) - int(np.unique(position[found]).size)
    note = (
        f"metadata from {path}: column(s) {', '.join(columns)} joined on path; "
        f"{int((~found).sum())} image(s) without a row (missing values), {unused} row(s) matching no image"
    )
    aux = dataset.aux
    notes = f"{aux.notes}; {note}" if aux.notes else note
    dataset.table = table
    dataset.aux = AuxInfo(attributes=aux.attributes, tags=aux.tags, hierarchy=aux.hierarchy, notes=notes)
    return dataset


__all__ = ["join_metadata", "read_metadata"]
