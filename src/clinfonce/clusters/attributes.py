"""Clusters from discrete attributes and tags: binarise, rank by entropy, cluster by top-k combinations.

The recipe of the paper (UT-Zappos50K, CUB-200-2011, Wider Attribute):

1. Every auxiliary column becomes one or more *binary attributes*:
   - a boolean column, or a numeric column whose values are all 0/1, is one attribute (``"name"``);
   - a categorical (string / object / category) column with m >= 3 values becomes m one-hot attributes
     (``"name=value"``, values in sorted order);
   - a categorical column with two values (say ``color`` red/blue) is ONE attribute, ``"name=value"`` for
     the first value in sorted order (``color=blue``): its two one-hot attributes would be complements of
     each other, with the same entropy and the same information, and would be ranked (and use up top-k
     places) twice. A column with a single value is one constant attribute;
   - a numeric column with other values is rejected unless a binning is given for it (``bins``): an int
     asks for that many quantile bins, a list gives the bin edges; the bins are then categorical values
     as above (two bins: one attribute);
   - a *tag* column (a list of tags per row, or a delimited string such as ``"#beach #sunset"``) gives one
     attribute per distinct tag (``"name:tag"``), optionally only the ``top_tags`` most frequent ones and
     those held by at least ``min_tag_count`` rows (:mod:`clinfonce.clusters.tags`: parsed once into a
     sparse matrix, so a vocabulary of 10^5 tags over millions of rows stays small).
2. Attributes are ranked by the entropy of their 0/1 distribution (in bits), highest first; ties keep the
   order of step 1 (columns in the order given), so the ranking is deterministic. A one-hot attribute of a
   categorical column is ranked on its own, like any binary attribute: ``color=red`` (is it red or not)
   competes with ``leather`` and with ``color=blue``; a value held by about half of the rows ranks first,
   a rare or near-universal value last. The top k may therefore hold some values of a column and not
   others.
3. The cluster of a row is the combination of its values on the top-k attributes. A larger k refines the
   clusters of a smaller k. Cluster ids follow the bit pattern of the cluster on the top-k attributes (in
   rank order, 0 before 1); the key of a cluster spells that combination, attributes in rank order joined
   by `` & ``: a plain binary attribute reads ``name`` or ``not name``, a categorical value ``name=value``
   or ``name!=value`` (for a column of two values, its other value: ``gender=male``), a tag ``name:tag``
   or ``no name:tag``, e.g. ``leather & color!=red & not heel``. Where a cluster holds a value of a
   categorical column, the column's other values go without saying: ``race=White & gender=male``, not
   ``race=White & gender=male & race!=Black & race!=Asian``.

Missing values (NaN / None) are never guessed: a row whose value is missing in any of the top-k attributes
gets a cluster of its own (for Cl-InfoNCE that row then behaves as in SimCLR), and the count of such rows
is recorded in the provenance as ``n_missing_rows``. Rows with an empty tag list simply have no tag.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.tags import TagMatrix, parse_tags
from clinfonce.errors import InputError

#: A categorical column with more distinct values than this is almost surely an identifier or free text.
MAX_CATEGORIES = 1000
#: Options of :func:`binarize` that matter only with tag columns (left out of a provenance without them).
_TAG_OPTIONS = ("top_tags", "tag_separator", "min_tag_count")


class TopKError(InputError):
    """``k`` is not in ``1..n_attributes`` (the number of binary attributes the columns give)."""

    def __init__(self, message: str, n_attributes: int) -> None:
        super().__init__(message)
        self.n_attributes = n_attributes


@dataclass(frozen=True)
class BinaryAttributes:
    """Binary attributes of N rows.

    Missingness belongs to a source column (all attributes made from one column are missing together),
    so it is kept per column, and only for columns that have a missing value.

    Attributes:
        values: ``bool [N, A]``; False where the source value is missing. A numpy array, or with tag
            columns a ``scipy.sparse.csc_array`` (read it through :meth:`columns` and :meth:`ones`).
        names: ``[A]`` attribute names (``"col"``, ``"col=value"``, ``"col:tag"``).
        sources: ``[A]`` the table column each attribute came from.
        missing_rows: source column -> ``bool [N]`` rows where it is missing (columns with none are absent).
        kinds: ``[A]`` ``"binary"`` (a 0/1 or boolean column), ``"category"`` (``col=value``) or ``"tag"``
            (``col:tag``); empty means every attribute is ``"binary"``. Only the cluster keys use it.
        other_values: categorical column with two values -> the value its one attribute leaves out (a
            key then reads ``col=red``, not ``col!=blue``). Only the cluster keys use it.
    """

    values: np.ndarray | sp.csc_array
    names: tuple[str, ...]
    sources: tuple[str, ...]
    missing_rows: Mapping[str, np.ndarray]
    kinds: tuple[str, ...] = ()
    other_values: Mapping[str, str] = field(default_factory=dict)

    def kind(self, index: int) -> str:
        """``"binary"``, ``"category"`` or ``"tag"``: what attribute ``index`` was made from."""
        return self.kinds[index] if self.kinds else "binary"

    def labels(self, index: int) -> tuple[str, str]:
        """How a cluster key writes attribute ``index`` when it is 0 and when it is 1."""
        name = self.names[index]
        kind = self.kind(index)
        if kind == "category":  # name is f"{source}={value}"; the column name may hold "=" itself
            source = self.sources[index]
            if source in self.other_values:
                return f"{source}={self.other_values[source]}", name
            return f"{source}!={name[len(source) + 1 :]}", name
        if kind == "tag":
            return f"no {name}", name
        return f"not {name}", name

    def columns(self, indices: np.ndarray) -> np.ndarray:
        """``bool [N, len(indices)]``, dense: the given attributes."""
        if isinstance(self.values, np.ndarray):
            return self.values[:, indices]
        return self.values[:, np.asarray(indices)].toarray().astype(bool, copy=False)

    def ones(self) -> np.ndarray:
        """``int64 [A]``: rows where each attribute is 1."""
        if isinstance(self.values, np.ndarray):
            return np.count_nonzero(self.values, axis=0).astype(np.int64)
        return np.diff(self.values.indptr).astype(np.int64)  # no stored zeros: stored values per column

    def signed(self, indices: np.ndarray) -> np.ndarray:
        """``int8 [N, len(indices)]``: the given attributes as +1 (1), -1 (0) or 0 (missing), the targets of
        the attribute-prediction baselines."""
        out = np.where(self.columns(indices), 1, -1).astype(np.int8)
        for j, i in enumerate(indices):
            missing = self.missing_rows.get(self.sources[i])
            if missing is not None:
                out[missing, j] = 0
        return out

    def tag_matrix(self) -> TagMatrix:
        """Every attribute as a tag of a :class:`TagMatrix` (``float32`` 0/1, sparse), for tag vectors."""
        matrix = sp.csr_array(self.values, dtype=np.float32)
        matrix.eliminate_zeros()
        return TagMatrix(
            matrix=matrix, names=self.names, sources=self.sources, missing_rows=dict(self.missing_rows)
        )

    def missing_count(self) -> np.ndarray:
        """``int64 [A]``: rows where each attribute is missing."""
        per_source = {name: int(rows.sum()) for name, rows in self.missing_rows.items()}
        return np.array([per_source.get(source, 0) for source in self.sources], dtype=np.int64)

    def positive_rate(self) -> np.ndarray:
        """``float64 [A]``: fraction of non-missing rows where each attribute is 1."""
        present = self.values.shape[0] - self.missing_count()
        return np.divide(self.ones(), present, out=np.zeros(len(self.names)), where=present > 0)

    def any_missing(self, attributes: np.ndarray) -> np.ndarray:
        """``bool [N]``: rows missing any of the given attribute indices."""
        rows = np.zeros(self.values.shape[0], dtype=bool)
        for source in {self.sources[i] for i in attributes}:
            if source in self.missing_rows:
                rows |= self.missing_rows[source]
        return rows


@dataclass(frozen=True)
class AttributeRanking:
    """Binary attributes in ranked order (most informative first).

    Attributes:
        names: ``[A]`` attribute names, ranked.
        sources: ``[A]`` source columns, ranked.
        entropy_bits: ``float64 [A]``, non-increasing.
        positive_rate: ``float64 [A]``: fraction of non-missing rows where the attribute is 1.
        missing_count: ``int64 [A]``: rows where the attribute is missing.
        order: ``int64 [A]``: ``order[r]`` is the index in the binarised matrix of the attribute ranked r.
    """

    names: tuple[str, ...]
    sources: tuple[str, ...]
    entropy_bits: np.ndarray
    positive_rate: np.ndarray
    missing_count: np.ndarray
    order: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per attribute, ranked: ``rank, attribute, source, entropy_bits, positive_rate, missing``."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(self.names) + 1),
                "attribute": self.names,
                "source": self.sources,
                "entropy_bits": self.entropy_bits,
                "positive_rate": self.positive_rate,
                "missing": self.missing_count,
            }
        )


def binarize(
    table: pd.DataFrame,
    columns: Sequence[str] = (),
    *,
    tags: Sequence[str] = (),
    bins: Mapping[str, int | Sequence[float]] | None = None,
    top_tags: int | None = None,
    tag_separator: str | None = None,
    min_tag_count: int = 1,
) -> BinaryAttributes:
    """Turn attribute and tag columns of ``table`` into binary attributes (rules in the module docstring).

    Args:
        table: one row per sample.
        columns: attribute columns.
        tags: tag columns (list-like cells or delimited strings).
        bins: per numeric column, a number of quantile bins or a list of bin edges.
        top_tags: keep only this many most frequent tags per tag column (ties broken by tag text).
        tag_separator: delimiter of string tag cells; ``None`` splits on whitespace, commas, semicolons, bars.
        min_tag_count: keep only tags held by at least this many rows.

    Raises:
        InputError: unknown column, a column given twice, a numeric non-0/1 column without bins, too many
            categories, a column with no binary attribute.
    """
    columns, tags, bins = list(columns), list(tags), dict(bins or {})
    _check_columns(table, [*columns, *tags])
    for name in bins:
        if name not in columns:
            raise InputError(f"bins given for {name!r}, which is not among the attribute columns")
    if not columns and not tags:
        raise InputError("no attribute or tag column given")
    binary = _binary_columns(table, [name for name in columns if name not in bins])
    blocks: list[np.ndarray] = []
    names: list[str] = []
    sources: list[str] = []
    kinds: list[str] = []
    other_values: dict[str, str] = {}
    missing_rows: dict[str, np.ndarray] = {}
    for name in columns:
        column = table[name]
        missing = column.isna().to_numpy() if name not in binary or binary[name] else None
        if name in binary:
            values, attribute_names, kind = None, [name], "binary"
        else:
            values, attribute_names, other = _binarize_categories(column, name, bins.get(name))
            kind = "category"
            if other is not None:
                other_values[name] = other
        if missing is not None and missing.any():
            missing_rows[name] = missing
        blocks.append(values)
        names.extend(attribute_names)
        sources.extend([name] * len(attribute_names))
        kinds.extend([kind] * len(attribute_names))
    matrix = _attribute_matrix(table, columns, blocks, len(names))
    if tags:
        tagged = parse_tags(
            table, tags, separator=tag_separator, top_tags=top_tags, min_tag_count=min_tag_count
        )
        missing_rows.update(tagged.missing_rows)
        names.extend(tagged.names)
        sources.extend(tagged.sources)
        kinds.extend(["tag"] * len(tagged.names))
        tag_columns = tagged.matrix.astype(bool).tocsc()
        matrix = sp.csc_array(sp.hstack([sp.csc_array(matrix), tag_columns], format="csc"))
    return BinaryAttributes(
        values=matrix,
        names=tuple(names),
        sources=tuple(sources),
        missing_rows=missing_rows,
        kinds=tuple(kinds),
        other_values=other_values,
    )


def _attribute_matrix(
    table: pd.DataFrame, columns: Sequence[str], blocks: Sequence[np.ndarray | None], width: int
) -> np.ndarray:
    """``bool [N, width]``: the attribute columns' blocks side by side (None: a column already binary)."""
    widths = [1 if block is None else block.shape[1] for block in blocks]
    starts = np.cumsum([0, *widths])[:-1]
    plain = [i for i, block in enumerate(blocks) if block is None]
    plain_names = [columns[i] for i in plain]
    if plain and len(plain) == width:  # the common large case: every column is already binary
        return _ones(table, plain_names)
    matrix = np.empty((len(table), width), dtype=bool)
    if plain:
        matrix[:, starts[plain]] = _ones(table, plain_names)
    for start, block_width, block in zip(starts, widths, blocks, strict=True):
        if block is not None:
            matrix[:, start : start + block_width] = block
    return matrix


def rank_attributes(
    table: pd.DataFrame | BinaryAttributes, columns: Sequence[str] = (), **binarize_options
) -> AttributeRanking:
    """Rank binary attributes by entropy, highest first; ties keep the binarisation order.

    Args:
        table: a table (binarised with :func:`binarize` and ``binarize_options``) or binary attributes.
        columns: attribute columns of the table.
    """
    attributes = (
        table if isinstance(table, BinaryAttributes) else binarize(table, columns, **binarize_options)
    )
    rate = attributes.positive_rate()
    entropy = _binary_entropy(rate)
    order = np.argsort(-entropy, kind="stable")
    return AttributeRanking(
        names=tuple(attributes.names[i] for i in order),
        sources=tuple(attributes.sources[i] for i in order),
        entropy_bits=entropy[order],
        positive_rate=rate[order],
        missing_count=attributes.missing_count()[order],
        order=order.astype(np.int64),
    )


def attribute_clusters(
    table: pd.DataFrame | BinaryAttributes,
    columns: Sequence[str] = (),
    k: int = 1,
    **binarize_options,
) -> ClusterAssignment:
    """Cluster rows by their values on the k highest-entropy binary attributes.

    Args:
        table: a table or already binarised attributes.
        columns: attribute columns; tag columns and bins go in ``binarize_options`` (see :func:`binarize`).
        k: number of top-ranked binary attributes to combine, ``1 <= k <= A``.

    Returns:
        Ids in ``0..K-1`` (clusters ordered by their bit pattern on the top-k attributes, then one singleton
        per row with a missing value, in row order). ``keys[c]`` spells the values of cluster c on the top-k
        attributes in rank order (see the module docstring), e.g. ``"leather & color!=red"``; a singleton
        of a row with a missing value has the key ``"<singleton:row>"``. The provenance lists the k
        attributes and their entropies.
    """
    attributes = (
        table if isinstance(table, BinaryAttributes) else binarize(table, columns, **binarize_options)
    )
    ranking = rank_attributes(attributes)
    n_attributes = len(ranking.names)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_attributes:
        raise TopKError(
            f"k must be an integer in 1..{n_attributes} (the number of binary attributes), got {k!r}",
            n_attributes,
        )
    top = ranking.order[:k]
    incomplete = attributes.any_missing(top)
    selected = attributes.columns(top)  # [N, k]
    packed = np.packbits(
        selected[~incomplete] if incomplete.any() else selected, axis=1
    )  # [N_regular, ceil(k/8)]
    inverse, first = _unique_rows(packed)
    patterns = np.unpackbits(packed[first], axis=1, count=k)  # [G, k], groups in bit-pattern order
    keys = _pattern_keys(
        patterns,
        [attributes.labels(int(i)) for i in top],
        [attributes.sources[i] if attributes.kind(int(i)) == "category" else None for i in top],
    )
    provenance = {
        "method": "attributes",
        "k": int(k),
        "attributes": list(ranking.names[:k]),
        "entropy_bits": [round(float(h), 6) for h in ranking.entropy_bits[:k]],
        "sources": sorted(set(attributes.sources)),
        "n_binary_attributes": n_attributes,
        "ranking": "entropy of the 0/1 distribution, highest first; ties keep column order",
        "missing_policy": "a row missing any of the top-k attributes is its own singleton cluster",
        "n_missing_rows": int(incomplete.sum()),
        **{
            key: value
            for key, value in binarize_options.items()
            if value is not None and (key not in _TAG_OPTIONS or binarize_options.get("tags"))
        },
    }
    return ClusterAssignment.from_inverse(inverse, keys, provenance, singleton_rows=incomplete)


def _pattern_keys(
    patterns: np.ndarray, labels: Sequence[tuple[str, str]], categories: Sequence[str | None]
) -> list[str]:
    """Readable keys of ``uint8 [G, k]`` 0/1 patterns: ``labels[j][bit]`` per attribute, joined by ``&``,
    without the words a pattern implies: where it holds a value of categorical column ``categories[j]``
    (``race=White``), that column's other values (``race!=Black``) go without saying."""
    words = np.array(labels, dtype=object).reshape(len(labels), 2)  # [k, 2]
    chosen = words[np.arange(len(labels))[None, :], patterns.astype(np.intp)]  # [G, k]
    keys = []
    for bits, row in zip(patterns.tolist(), chosen.tolist(), strict=True):
        held = {column for column, bit in zip(categories, bits, strict=True) if bit and column is not None}
        kept = [
            word for word, bit, column in zip(row, bits, categories, strict=True) if bit or column not in held
        ]
        keys.append(" & ".join(kept))
    return keys


def _unique_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal rows of a ``uint8 [N, B]`` matrix, numbering groups in lexicographic row order.

    Rows are read as big-endian 64-bit words and sorted with ``lexsort``, several times faster than
    ``np.unique(axis=0)`` or sorting byte strings.

    Returns:
        ``(inverse int64 [N], first int64 [G])``: the group of each row and one row index per group.
    """
    n, width = packed.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = packed
    words = words.view(">u8")  # [N, W]
    order = np.lexsort(words.T[::-1])  # the first word is the primary key
    ordered = words[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return inverse, order[starts]


def _check_columns(table: pd.DataFrame, names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}; the table has: {', '.join(map(str, table.columns))}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise InputError(f"column(s) given more than once: {repeated}")


def _binary_columns(table: pd.DataFrame, names: Sequence[str]) -> dict[str, bool]:
    """Which of ``names`` are binary (bool, or numeric with only 0/1); value: whether it has missing values.

    Numeric columns are checked together in one pass, which matters for tables with hundreds of columns.
    """
    found: dict[str, bool] = {}
    numeric = []
    for name in names:
        column = table[name]
        if pd.api.types.is_bool_dtype(column):
            found[name] = column.dtype != np.bool_  # a numpy bool column cannot hold a missing value
        elif pd.api.types.is_numeric_dtype(column):
            numeric.append(name)
    for group in _column_groups(table, numeric):
        values = _numeric_values(table[group])
        nan = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)
        zero_one = ((values == 0) | (values == 1) | nan).all(axis=0)
        for name, binary, has_nan in zip(group, zero_one, nan.any(axis=0), strict=True):
            if binary:
                found[name] = bool(has_nan)
    return found


def _column_groups(table: pd.DataFrame, names: Sequence[str], size: int = 32) -> list[list[str]]:
    """Split columns into groups of one dtype and at most ``size`` columns, for vectorised passes that
    stay within a bounded amount of memory."""
    by_dtype: dict[object, list[str]] = {}
    for name in names:
        by_dtype.setdefault(table[name].dtype, []).append(name)
    return [group[i : i + size] for group in by_dtype.values() for i in range(0, len(group), size)]


def _numeric_values(frame: pd.DataFrame) -> np.ndarray:
    """``[N, C]`` numpy values of same-dtype numeric columns; nullable dtypes become float with NaN."""
    if any(isinstance(dtype, pd.api.extensions.ExtensionDtype) for dtype in frame.dtypes):
        return frame.to_numpy(np.float64, na_value=np.nan)
    return frame.to_numpy()


def _ones(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``bool [N, C]``: where binary columns equal 1 (True); missing values read as False."""
    if all(table[name].dtype == np.bool_ for name in names):
        return table[list(names)].to_numpy(dtype=bool)  # column-major from pandas: fast column slices
    matrix = np.empty((len(table), len(names)), dtype=bool)
    position = {name: i for i, name in enumerate(names)}
    for group in _column_groups(table, names):
        frame = table[group]
        if all(dtype == np.bool_ for dtype in frame.dtypes):
            values = frame.to_numpy(dtype=bool)
        elif any(pd.api.types.is_bool_dtype(dtype) for dtype in frame.dtypes):  # nullable boolean
            values = frame.to_numpy(dtype=bool, na_value=False)
        else:
            values = _numeric_values(frame) == 1
        matrix[:, [position[name] for name in group]] = values
    return matrix


def _binarize_categories(
    column: pd.Series, name: str, binning: int | Sequence[float] | None
) -> tuple[np.ndarray, list[str], str | None]:
    """``(bool [N, m] one-hot values, [m] attribute names, the value a two-valued column's one attribute
    leaves out, else None)``."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        if binning is None:
            raise InputError(
                f"column {name!r} is numeric with values other than 0/1; give a binning for it "
                "(a number of quantile bins or a list of edges) or convert it to categories"
            )
        column = _bin(column, name, binning)
    codes, categories = pd.factorize(column, sort=True)  # NaN -> -1
    if len(categories) == 0:
        raise InputError(f"column {name!r} has no values (all missing)")
    if len(categories) > MAX_CATEGORIES:
        raise InputError(
            f"column {name!r} has {len(categories)} distinct values (more than {MAX_CATEGORIES}): is it an "
            "identifier or free text? Use it as a tag column or bin it"
        )
    if len(categories) == 2:  # complementary one-hot attributes: keep the first, count the column once
        return (codes == 0)[:, None], [f"{name}={categories[0]}"], str(categories[1])
    values = codes[:, None] == np.arange(len(categories))[None, :]
    return values, [f"{name}={category}" for category in categories], None


def _bin(column: pd.Series, name: str, binning: int | Sequence[float]) -> pd.Series:
    if isinstance(binning, (int, np.integer)):
        if binning < 2:
            raise InputError(f"bins for {name!r} must be >= 2, got {binning}")
        binned = pd.qcut(column, q=int(binning), duplicates="drop")
    else:
        edges = [float(edge) for edge in binning]
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise InputError(f"bin edges for {name!r} must be at least two increasing numbers, got {edges}")
        binned = pd.cut(column, bins=edges, include_lowest=True)
        outside = binned.isna() & column.notna()
        if outside.any():
            row = int(np.flatnonzero(outside.to_numpy())[0])
            raise InputError(
                f"column {name!r}: {int(outside.sum())} value(s) fall outside the bin edges "
                f"(first at row {row}: {column.iloc[row]} outside {edges})"
            )
    return binned.astype(str).where(column.notna())


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)
