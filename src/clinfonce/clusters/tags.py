"""Tags as a sparse image x tag matrix: parsed once, pruned, weighted.

A tag column holds, per row, a list of tags (a list, tuple, set or array) or a delimited string such as
``"#beach #sunset"`` (by default split on whitespace, commas, semicolons and bars; ``separator`` names one
delimiter instead, and each tag is then stripped of surrounding whitespace). A row holds a tag or not:
repeats within a row count once. A missing cell (None / NaN) is *missing*, which stage 1 never guesses;
an empty string or list is a row without tags.

Real vocabularies have 10^4-10^5 tags with a long tail and a handful per image, so the tags are kept as a
``scipy.sparse`` matrix (never an N x T dense array) and parsed with one split of all cells joined into one
string (``benchmarks/bench_tags.py`` measures it against pandas splitting and counting the same strings).
``top_tags`` keeps the most frequent tags of each column, ``min_tag_count`` drops tags held by fewer rows.

Weighting for the tag vectors (soft positives, tag K-means): ``binary`` (1 per tag held) or ``tfidf``
(``idf = ln((1 + N) / (1 + df)) + 1``, scikit-learn's smoothed idf, so rare tags weigh more).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clinfonce.clusters.spec import TAG_WEIGHTINGS
from clinfonce.errors import InputError

_DEFAULT_SEPARATORS = ",;|"  # with whitespace: what splits a tag string when no separator is given
_ROW_MARK = (
    "\x01"  # joins the cells of a column into one string: not whitespace, not NUL (which numpy strips)
)


@dataclass(frozen=True)
class TagMatrix:
    """Which of N rows hold which of T tags.

    Attributes:
        matrix: ``scipy.sparse.csr_array`` ``float32 [N, T]``, 1 where the row holds the tag (no stored 0).
        names: ``[T]`` ``"column:tag"``, columns in the order given, tags of a column in text order.
        sources: ``[T]`` the column each tag came from.
        missing_rows: column -> ``bool [N]`` rows whose cell is missing (columns without any are absent).
    """

    matrix: sp.csr_array
    names: tuple[str, ...]
    sources: tuple[str, ...]
    missing_rows: Mapping[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    def document_frequency(self) -> np.ndarray:
        """``int64 [T]``: rows holding each tag."""
        return np.bincount(self.matrix.indices, minlength=self.matrix.shape[1]).astype(np.int64)

    def any_missing(self) -> np.ndarray:
        """``bool [N]``: rows whose cell is missing in any tag column."""
        rows = np.zeros(self.n_rows, dtype=bool)
        for missing in self.missing_rows.values():
            rows |= missing
        return rows

    def weighted(self, weighting: str = "binary") -> sp.csr_array:
        """``float32 [N, T]`` tag vectors: the matrix itself (``binary``) or its tf-idf weights."""
        if weighting not in TAG_WEIGHTINGS:
            raise InputError(f"tag weighting must be one of {', '.join(TAG_WEIGHTINGS)}, got {weighting!r}")
        if weighting == "binary":
            return self.matrix
        idf = np.log((1 + self.n_rows) / (1 + self.document_frequency())) + 1
        weighted = self.matrix.copy()
        weighted.data = (weighted.data * idf[weighted.indices]).astype(np.float32)
        return weighted

    def used(self, limit: int | None = None) -> dict[str, int]:
        """The tags and the rows holding each, most frequent first (ties in name order); the first
        ``limit`` only, if given: what a run's provenance lists."""
        counts = self.document_frequency()
        order = np.lexsort((np.array(self.names, dtype=object), -counts))[:limit]
        return {self.names[i]: int(counts[i]) for i in order}


@dataclass(frozen=True)
class TagPositives:
    """Tag vectors of N images for soft positives (``ClInfoNCELoss(pos_vectors=...)``).

    Attributes:
        vectors: ``scipy.sparse.csr_array`` ``float32 [N, T]``: the weighted tags; the row of an image with
            a missing tag cell is zero (never guessed: its positives are its own views only).
        provenance: how they were made and every tag used with the images holding it, most frequent first.
    """

    vectors: sp.csr_array
    provenance: dict

    @classmethod
    def of(cls, tags: TagMatrix, weighting: str) -> TagPositives:
        """The tag vectors of ``tags`` with ``weighting`` (``binary`` or ``tfidf``)."""
        vectors = tags.weighted(weighting).copy()
        missing = tags.any_missing()
        if missing.any():
            vectors = sp.csr_array(sp.diags_array((~missing).astype(np.float32)) @ vectors)
            vectors.eliminate_zeros()
        empty = int(((np.diff(vectors.indptr) == 0) & ~missing).sum())
        provenance = {
            "method": "tag_positives",
            "weighting": weighting,
            "pair_weight": "cosine of the two images' tag vectors (1 within an image)",
            "n_tags": len(tags.names),
            "tag_columns": sorted(set(tags.sources)),
            "n_untagged_rows": empty,
            "n_missing_rows": int(missing.sum()),
            "missing_policy": "an image with a missing tag cell has a zero vector: its own views only",
            "tags": tags.used(),
        }
        return cls(vectors=vectors, provenance=provenance)


def parse_tags(
    table: pd.DataFrame,
    columns: Sequence[str],
    *,
    separator: str | None = None,
    top_tags: int | None = None,
    min_tag_count: int = 1,
) -> TagMatrix:
    """The tag matrix of ``columns`` of ``table`` (rules in the module docstring).

    Args:
        table: one row per sample.
        columns: tag columns.
        separator: the delimiter of string cells; None: whitespace, commas, semicolons and bars.
        top_tags: keep only this many most frequent tags per column (ties broken by tag text).
        min_tag_count: keep only tags held by at least this many rows.

    Raises:
        InputError: an unknown column, a cell that is neither text nor a list (naming its row), a column
            without any tag, bad ``top_tags`` / ``min_tag_count``.
    """
    if top_tags is not None and top_tags < 1:
        raise InputError(f"top_tags must be >= 1, got {top_tags}")
    if min_tag_count < 1:
        raise InputError(f"min_tag_count must be >= 1, got {min_tag_count}")
    unknown = [name for name in columns if name not in table.columns]
    if unknown:
        raise InputError(
            f"unknown tag column(s) {unknown}; the table has: {', '.join(map(str, table.columns))}"
        )
    blocks, names, sources, missing_rows = [], [], [], {}
    for name in columns:
        matrix, vocabulary, missing = _column_matrix(table[name], name, separator)
        counts = np.bincount(matrix.indices, minlength=len(vocabulary))
        keep = np.flatnonzero(counts >= min_tag_count)
        if top_tags is not None:
            order = np.lexsort((vocabulary[keep], -counts[keep]))  # most frequent first, ties by text
            keep = np.sort(keep[order[:top_tags]])
        blocks.append(matrix[:, keep] if len(keep) < len(vocabulary) else matrix)
        names.extend(f"{name}:{tag}" for tag in vocabulary[keep])
        sources.extend([name] * len(keep))
        if missing.any():
            missing_rows[name] = missing
    matrix = blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csr")
    return TagMatrix(
        matrix=sp.csr_array(matrix), names=tuple(names), sources=tuple(sources), missing_rows=missing_rows
    )


def _column_matrix(
    column: pd.Series, name: str, separator: str | None
) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    """One column's ``float32 [N, T]`` 0/1 matrix, its ``[T]`` tags in text order and ``bool [N]`` missing
    cells."""
    column = column.reset_index(drop=True)
    missing = _missing_cells(column)
    rows, tokens = _tokens(column, missing, name, separator)
    if len(tokens) == 0:
        raise InputError(f"tag column {name!r} holds no tags")
    codes, vocabulary = pd.factorize(tokens, sort=True)
    matrix = sp.csr_array(
        (np.ones(len(codes), dtype=np.float32), (rows, codes)), shape=(len(column), len(vocabulary))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1  # a tag repeated within a row counts once
    return matrix, np.asarray(vocabulary, dtype=object), missing


def _missing_cells(column: pd.Series) -> np.ndarray:
    """``bool [N]``: None / NaN / NA cells (a list cell is never missing, even an empty one)."""
    return np.asarray(column.isna(), dtype=bool)


def _tokens(
    column: pd.Series, missing: np.ndarray, name: str, separator: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, tag) occurrence of the column: ``int64 [M]`` rows and ``[M]`` tag strings."""
    present = np.flatnonzero(~missing)
    cells = column.to_numpy(dtype=object)[present]
    is_text = np.fromiter((isinstance(cell, str) for cell in cells), dtype=bool, count=len(cells))
    parts = []
    if is_text.any():
        parts.append(_split_strings(present[is_text], cells[is_text], separator))
    if not is_text.all():
        parts.append(_list_tokens(present[~is_text], cells[~is_text], name))
    rows = np.concatenate([p[0] for p in parts])
    tokens = np.concatenate([p[1] for p in parts])
    return rows, tokens


def _split_strings(
    rows: np.ndarray, cells: np.ndarray, separator: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Split text cells into tags with one ``str.split`` of all cells joined by a row mark, so the work is
    done in C rather than one Python call per cell."""
    if any(_ROW_MARK in cell for cell in cells):  # the mark would be read as a row boundary: split per cell
        tokens = [_split_one(cell, separator) for cell in cells]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        return np.repeat(rows, lengths), np.array([t for row in tokens for t in row], dtype=object)
    if separator is None:
        text = f" {_ROW_MARK} ".join(cells).translate(_WHITESPACE_FOR_SEPARATORS)
        flat = np.array(text.split(), dtype=object)
    else:
        text = f"{separator}{_ROW_MARK}{separator}".join(cells)
        flat = pd.Series(text.split(separator), dtype=object).str.strip().to_numpy(dtype=object)
    marks = flat == _ROW_MARK
    row_of = np.cumsum(marks)  # index of the cell each token belongs to
    keep = ~marks & (flat != "")
    return rows[row_of[keep]], flat[keep]


_WHITESPACE_FOR_SEPARATORS = str.maketrans(dict.fromkeys(_DEFAULT_SEPARATORS, " "))
_DEFAULT_SPLIT = re.compile(r"[\s" + re.escape(_DEFAULT_SEPARATORS) + r"]+")


def _split_one(cell: str, separator: str | None) -> list[str]:
    parts = _DEFAULT_SPLIT.split(cell) if separator is None else cell.split(separator)
    return [part.strip() for part in parts if part.strip()]


def _list_tokens(rows: np.ndarray, cells: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Tags of list-like cells, as text; any other cell is an error naming its row."""
    tokens: list[str] = []
    lengths = np.zeros(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        if not isinstance(cell, (list, tuple, set, frozenset, np.ndarray)):
            raise InputError(
                f"column {name!r}, row {int(rows[i])}: a tag cell must be text or a list of tags, "
                f"got {type(cell).__name__}: {cell!r}"
            )
        tags = [str(tag).strip() for tag in cell]
        tags = [tag for tag in tags if tag]
        tokens.extend(tags)
        lengths[i] = len(tags)
    return np.repeat(rows, lengths), np.array(tokens, dtype=object)


__all__ = ["TagMatrix", "TagPositives", "parse_tags"]
