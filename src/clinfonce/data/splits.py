"""Split rules: seeded stratified picks, validation splits carved from training rows, split names.

Seeded splits (:func:`stratified_pick`), used by every source without a split of its own:

- within each stratum (class), rows are ordered by their path, then permuted by a generator seeded with
  ``(seed, crc32(class name))``, so a class's split depends only on the seed and its own files;
- ``round(n * fraction)`` rows of a class of ``n`` are picked, at most ``n - 1``: every class keeps at
  least one training image;
- a test split is drawn first (when the source has none); a validation split (``val_fraction``, default
  0) is then drawn from the remaining training rows the same way (:func:`with_validation`).

Split cells of a metadata table are read by :func:`normalise_split`: ``train`` / ``val`` / ``test``, case-
insensitive, with the synonyms of :data:`SPLIT_NAMES`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from clinfonce.data.dataset import is_missing
from clinfonce.errors import InputError

#: Test fraction of the seeded stratified split when a folder or table has no split of its own.
DEFAULT_TEST_FRACTION = 0.2
#: Split cell (lower case, stripped) -> split name.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def stratified_pick(
    strata: Sequence[object] | np.ndarray,
    keys: Sequence[str] | np.ndarray | pd.Series,
    fraction: float,
    seed: int,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Pick a seeded, stratified ``fraction`` of rows (rules in the module docstring).

    Args:
        strata: ``[N]`` the stratum (class) of each row; missing values form one stratum.
        keys: ``[N]`` a stable sort key of each row (its path), so the pick ignores file-listing order.
        fraction: in ``[0, 1)``.
        seed: the seed.
        eligible: ``bool [N]`` rows that may be picked (default: all).

    Returns:
        ``bool [N]``: the picked rows.
    """
    fraction = float(fraction)
    if not 0 <= fraction < 1:
        raise InputError(f"a split fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return np.zeros(len(keys), dtype=bool)
    return _pick(
        strata, keys, seed, eligible, lambda count: min(int(np.floor(count * fraction + 0.5)), count - 1)
    )


def stratified_sample(
    strata: Sequence[object] | np.ndarray,
    keys: Sequence[str] | np.ndarray | pd.Series,
    per_stratum: int,
    seed: int,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``per_stratum`` rows of each stratum (all of a smaller one), seeded as :func:`stratified_pick`;
    ``bool [N]``."""
    return _pick(strata, keys, seed, eligible, lambda count: min(per_stratum, count))


def training_sample(
    classes: Sequence[object] | np.ndarray,
    keys: Sequence[str] | np.ndarray | pd.Series,
    splits: Sequence[str] | np.ndarray | pd.Series,
    per_class: int,
    seed: int,
) -> np.ndarray:
    """``bool [N]``: the rows to keep for ``train_per_class``: ``per_class`` training rows of each class
    (:func:`stratified_sample` over the training rows; unlabelled rows are one stratum) and every row of
    the other splits."""
    training = (pd.Series(splits) == "train").to_numpy()
    return stratified_sample(classes, keys, per_class, seed, eligible=training) | ~training


def _pick(
    strata: Sequence[object] | np.ndarray,
    keys: Sequence[str] | np.ndarray | pd.Series,
    seed: int,
    eligible: np.ndarray | None,
    how_many: Callable[[int], int],
) -> np.ndarray:
    """``bool [N]``: ``how_many(n)`` rows of each stratum of n eligible rows, drawn by the module's rule."""
    n = len(keys)
    picked = np.zeros(n, dtype=bool)
    rows = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    if len(rows) == 0:
        return picked
    names = pd.Series(np.asarray(strata, dtype=object)[rows]).map(lambda v: "" if pd.isna(v) else str(v))
    codes, uniques = pd.factorize(names, sort=True)
    order = np.lexsort((_sort_ranks(keys, rows), codes))
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        name = uniques[codes[group[0]]]
        count = len(group)
        take = how_many(count)
        if take <= 0:
            continue
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
        picked[rows[group[rng.permutation(count)[:take]]]] = True
    return picked


def _sort_ranks(keys: Sequence[str] | np.ndarray | pd.Series, rows: np.ndarray) -> np.ndarray:
    """``int64 [R]``: the rank of each of ``keys[rows]`` in sorted (code-point) order, ties by position;
    sorted where the keys are (Arrow for Arrow strings), without a fixed-width copy of every key."""
    ordered = pd.Series(keys).iloc[rows].argsort(kind="stable").to_numpy()
    ranks = np.empty(len(ordered), dtype=np.int64)
    ranks[ordered] = np.arange(len(ordered))
    return ranks


def with_validation(
    split: pd.Series, labels: np.ndarray, keys: pd.Series | np.ndarray, fraction: float, seed: int
) -> pd.Series:
    """``split`` with a stratified ``fraction`` of each class's training rows moved to ``"val"``.

    Args:
        split: ``[N]`` split names.
        labels: ``[N]`` the strata (class ids).
        keys: ``[N]`` strings that order the rows within a class before the seeded draw (e.g. paths).
        fraction: share of each class's training rows to move (0: none).
        seed: seed of the draw (see :func:`stratified_pick`).
    """
    if not fraction:
        return split
    moved = stratified_pick(labels, keys, fraction, seed, (split == "train").to_numpy())
    return split.where(~moved, "val")  # compared and replaced where the values are: no string per row


def normalise_split(value: object, where: str) -> str:
    """``"train"`` / ``"val"`` / ``"test"`` from a split cell (case-insensitive; training, validation, valid,
    dev and testing are accepted too); anything else is an :class:`InputError` naming ``where``."""
    text = "" if is_missing(value) else str(value)
    split = SPLIT_NAMES.get(text.strip().lower())
    if split is None:
        raise InputError(f"{where}: split {value!r} is not one of train, val, test")
    return split


def split_cells_or_seeded(
    table: pd.DataFrame,
    cells: Sequence[object] | pd.Series | None,
    where: Callable[[int], str],
    test_fraction: float,
    seed: int,
) -> np.ndarray:
    """Each row's split: from its split cell when the data has a split column, else ``train`` with a seeded
    ``test_fraction`` of each class (:func:`stratified_pick`) as ``test``.

    Args:
        table: ``[N]`` rows with ``class`` and ``path`` columns.
        cells: ``[N]`` split cells (:func:`normalise_split`), or None.
        where: row number -> where that row is, for the message of a bad cell.
        test_fraction: the fraction of each class for the test split without cells.
        seed: the seed of that pick.

    Returns:
        ``object [N]`` of ``"train"`` / ``"val"`` / ``"test"``.
    """
    if cells is not None:
        return np.array([normalise_split(value, where(i)) for i, value in enumerate(cells)], dtype=object)
    splits = np.empty(len(table), dtype=object)
    splits.fill("train")  # one shared string: np.full would make a string per row (~70 bytes each)
    if test_fraction:
        splits[stratified_pick(table["class"], table["path"], test_fraction, seed)] = "test"
    return splits
