"""The sparse tag matrix against a per-cell reference parser, scikit-learn's tf-idf, and its rules."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from clinfonce.clusters.attributes import attribute_clusters
from clinfonce.clusters.tags import parse_tags
from clinfonce.errors import InputError


def reference_sets(column: pd.Series, separator: str | None) -> list[set[str] | None]:
    """Each cell's tags, one cell at a time: None for a missing cell."""
    out: list[set[str] | None] = []
    for cell in column:
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            out.append(None)
            continue
        if isinstance(cell, str):
            parts = re.split(r"[\s,;|]+", cell) if separator is None else cell.split(separator)
        else:
            parts = [str(tag) for tag in cell]
        out.append({part.strip() for part in parts if part.strip()})
    return out


def as_sets(matrix: sp.csr_array, names: tuple[str, ...], prefix: str) -> list[set[str]]:
    dense = matrix.toarray()
    return [{names[j][len(prefix) :] for j in np.flatnonzero(row)} for row in dense]


def random_cells(seed: int, n: int, separator: str | None) -> list[object]:
    rng = np.random.default_rng(seed)
    vocabulary = [f"t{i}" for i in range(40)] + ["new york", "#beach", "b|c"]
    joiners = [" ", ",", ";", " | ", "  ", "\t"] if separator is None else [separator, f" {separator} "]
    cells: list[object] = []
    for _ in range(n):
        roll = rng.random()
        tags = [str(t) for t in rng.choice(vocabulary, size=rng.integers(0, 6))]
        if separator is None:
            tags = [t for t in tags if " " not in t and "|" not in t]  # the default split would cut them
        if roll < 0.1:
            cells.append(None)
        elif roll < 0.15:
            cells.append(float("nan"))
        elif roll < 0.3:
            cells.append(tags)  # a list cell
        else:
            joiner = joiners[rng.integers(len(joiners))]
            cells.append(
                (" " if rng.random() < 0.3 else "") + joiner.join(tags) + joiner * rng.integers(0, 2)
            )
    return cells


@pytest.mark.parametrize("separator", [None, ","])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_per_cell_parser(separator: str | None, seed: int) -> None:
    column = pd.Series(random_cells(seed, 300, separator), dtype=object)
    tags = parse_tags(pd.DataFrame({"tags": column}), ["tags"], separator=separator)
    expected = reference_sets(column, separator)
    got = as_sets(tags.matrix, tags.names, "tags:")
    for row, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == (want or set()), row
    assert tags.missing_rows["tags"].tolist() == [want is None for want in expected]
    vocabulary = sorted(set().union(*(s for s in expected if s)))
    assert tags.names == tuple(f"tags:{t}" for t in vocabulary)  # text order
    assert set(tags.matrix.data.tolist()) == {1.0}  # repeats within a row count once, no stored zero


def test_top_tags_and_min_count_prune_by_rows_holding_a_tag() -> None:
    table = pd.DataFrame({"t": ["a a b", "a c", "b c", "a d", "e", ""]})  # rows: a 3, b 2, c 2, d 1, e 1
    assert parse_tags(table, ["t"]).document_frequency().tolist() == [3, 2, 2, 1, 1]
    assert parse_tags(table, ["t"], top_tags=2).names == ("t:a", "t:b")  # b beats c by text
    assert parse_tags(table, ["t"], min_tag_count=2).names == ("t:a", "t:b", "t:c")
    both = parse_tags(table, ["t"], min_tag_count=2, top_tags=1)
    assert both.names == ("t:a",) and both.matrix.toarray()[:, 0].tolist() == [1, 1, 0, 1, 0, 0]


def test_several_columns_are_side_by_side() -> None:
    table = pd.DataFrame({"x": ["a", "b", None], "y": [["a"], [], ["c", "a"]]})
    tags = parse_tags(table, ["x", "y"])
    assert tags.names == ("x:a", "x:b", "y:a", "y:c")
    assert tags.matrix.toarray().tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 1]]
    assert set(tags.missing_rows) == {"x"} and tags.any_missing().tolist() == [False, False, True]
    assert tags.used() == {"y:a": 2, "x:a": 1, "x:b": 1, "y:c": 1}


def test_tfidf_equals_scikit_learn() -> None:
    text = pytest.importorskip("sklearn.feature_extraction.text")
    cells = [c if isinstance(c, str) else "" for c in random_cells(3, 200, None) if not isinstance(c, list)]
    tags = parse_tags(pd.DataFrame({"t": cells}), ["t"])
    binary = tags.matrix.toarray()
    reference = text.TfidfTransformer(norm=None, smooth_idf=True).fit_transform(binary).toarray()
    np.testing.assert_allclose(tags.weighted("tfidf").toarray(), reference, rtol=1e-6)
    assert tags.weighted("binary") is tags.matrix
    with pytest.raises(InputError, match="tag weighting"):
        tags.weighted("bm25")


def test_a_cell_holding_the_row_mark_is_still_split_by_cell() -> None:
    table = pd.DataFrame({"t": ["a\x01b c", "c"]})
    tags = parse_tags(table, ["t"])
    assert tags.names == ("t:a\x01b", "t:c")
    assert tags.matrix.toarray().tolist() == [[1, 1], [0, 1]]


def test_errors_name_the_column_and_row() -> None:
    with pytest.raises(InputError, match=r"column 't', row 2: a tag cell must be text or a list"):
        parse_tags(pd.DataFrame({"t": ["a", None, 5]}), ["t"])
    with pytest.raises(InputError, match="holds no tags"):
        parse_tags(pd.DataFrame({"t": ["", None]}), ["t"])
    with pytest.raises(InputError, match="unknown tag column"):
        parse_tags(pd.DataFrame({"t": ["a"]}), ["u"])
    with pytest.raises(InputError, match="min_tag_count must be >= 1"):
        parse_tags(pd.DataFrame({"t": ["a"]}), ["t"], min_tag_count=0)


def test_attribute_clusters_of_many_tags_stay_sparse() -> None:
    """A 20,000-tag vocabulary over 5,000 rows: the attributes are sparse, and the top-k clusters equal
    those of the dense 0/1 table of the same tags."""
    rng = np.random.default_rng(4)
    ranks = np.minimum(rng.zipf(1.3, size=(5000, 5)), 20_000)
    cells = [" ".join(f"tag{r}" for r in row) for row in ranks]
    table = pd.DataFrame({"t": cells})
    from clinfonce.clusters.attributes import binarize

    attributes = binarize(table, tags=["t"])
    assert sp.issparse(attributes.values)
    ours = attribute_clusters(table, tags=["t"], k=6)
    sets = [set(cell.split()) for cell in cells]
    vocabulary = sorted(set().union(*sets))
    dense = pd.DataFrame({f"t:{t}": [t in s for s in sets] for t in vocabulary})
    reference = attribute_clusters(dense, list(dense.columns), k=6)
    assert ours.provenance["attributes"] == reference.provenance["attributes"]
    assert ours.ids.tolist() == reference.ids.tolist()
