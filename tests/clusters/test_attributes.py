"""Attribute and tag clusters against a brute-force grouping written here, and hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from clinfonce.clusters.attributes import attribute_clusters, binarize, rank_attributes


def h(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def same_partition(ids: np.ndarray, groups: list) -> bool:
    """True when ids put two rows together exactly when their groups are equal."""
    ids = np.asarray(ids)
    return all(
        (ids[i] == ids[j]) == (groups[i] == groups[j])
        for i in range(len(ids))
        for j in range(i + 1, len(ids))
    )


TABLE = pd.DataFrame(
    {
        "leather": [1, 1, 0, 0, 1, 0, 1, 1],  # p = 5/8
        "heel": [True, False, False, False, False, False, False, True],  # p = 2/8
        "color": ["red", "blue", "red", "red", "blue", "red", "green", "red"],
        "size": [36.0, 38.5, 41.0, 43.0, 37.0, 44.5, 39.0, 42.0],
    }
)


def test_ranking_by_entropy_by_hand() -> None:
    ranking = rank_attributes(TABLE, ["leather", "heel", "color"])
    expected = {
        "leather": h(5 / 8),
        "heel": h(2 / 8),
        "color=blue": h(2 / 8),
        "color=green": h(1 / 8),
        "color=red": h(5 / 8),
    }
    # ties (leather/color=red, heel/color=blue) keep the column order
    assert ranking.names == ("leather", "color=red", "heel", "color=blue", "color=green")
    assert ranking.entropy_bits == pytest.approx([expected[name] for name in ranking.names])
    assert ranking.positive_rate.tolist() == pytest.approx([5 / 8, 5 / 8, 2 / 8, 2 / 8, 1 / 8])
    frame = ranking.to_frame()
    assert frame["attribute"].tolist()[0] == "leather" and frame["rank"].tolist() == [1, 2, 3, 4, 5]


def test_numeric_column_needs_bins() -> None:
    with pytest.raises(ValueError, match="'size' is numeric"):
        rank_attributes(TABLE, ["size"])
    quantiles = binarize(TABLE, ["size"], bins={"size": 4})
    assert quantiles.values.sum(axis=0).tolist() == [2, 2, 2, 2]
    # two bins are a two-valued column: one attribute, the lower half (36, 37, 38.5, 39 <= median 40)
    halves = binarize(TABLE, ["size"], bins={"size": 2})
    assert halves.values.astype(int).tolist() == [[1], [1], [0], [0], [1], [0], [1], [0]]
    edges = binarize(TABLE, ["size"], bins={"size": [30, 40, 50]})
    assert len(edges.names) == 1
    assert edges.values[:, 0].tolist() == [True, True, False, False, True, False, True, False]
    with pytest.raises(ValueError, match="outside the bin edges"):
        binarize(TABLE, ["size"], bins={"size": [30, 40]})


@pytest.mark.parametrize("seed", [0, 1])
def test_clusters_equal_brute_force_grouping_of_top_k(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({f"a{i}": rng.random(60) < rng.uniform(0.1, 0.9) for i in range(7)})
    table["shape"] = rng.choice(["round", "square", "star"], 60)
    ranking = rank_attributes(table, list(table.columns))
    matrix = binarize(table, list(table.columns))
    column = {name: i for i, name in enumerate(matrix.names)}
    for k in range(1, len(ranking.names) + 1):
        result = attribute_clusters(table, list(table.columns), k=k)
        top = [column[name] for name in ranking.names[:k]]
        groups = [tuple(bool(matrix.values[row, c]) for c in top) for row in range(60)]
        assert same_partition(result.ids, groups)
        assert result.n_clusters == len(set(groups))
        # each key spells its cluster's values on the top-k attributes, in rank order, leaving out the
        # shape!=... words of a row whose shape=... is among them
        for row in range(60):
            has_shape = any(
                v for n, v in zip(ranking.names[:k], groups[row], strict=True) if n.startswith("shape=")
            )
            words = [
                (name if value else _negated(name))
                for name, value in zip(ranking.names[:k], groups[row], strict=True)
                if value or not (has_shape and name.startswith("shape="))
            ]
            assert result.keys[result.ids[row]] == " & ".join(words)
        # ids follow the bit patterns (0 before 1, first attribute most significant)
        patterns = {result.ids[row]: groups[row] for row in range(60)}
        assert [patterns[c] for c in range(result.n_clusters)] == sorted(set(groups))
        assert result.provenance["attributes"] == list(ranking.names[:k])


def _negated(name: str) -> str:
    """Hand-written negation for the brute-force test: ``shape=round`` -> ``shape!=round``, ``a3`` ->
    ``not a3``."""
    return name.replace("=", "!=") if "=" in name else f"not {name}"


def test_larger_k_refines_smaller_k() -> None:
    rng = np.random.default_rng(3)
    table = pd.DataFrame({f"a{i}": rng.random(500) < 0.4 for i in range(12)})
    previous = None
    for k in range(1, 13):
        ids = attribute_clusters(table, list(table.columns), k=k).ids
        if previous is not None:
            parent_of = {}
            for child, parent in zip(ids, previous, strict=True):
                assert parent_of.setdefault(child, parent) == parent  # a child cluster has one parent
        previous = ids


def test_ids_are_deterministic_and_sorted_by_pattern() -> None:
    first = attribute_clusters(TABLE, ["leather", "heel"], k=2)
    again = attribute_clusters(TABLE.copy(), ["leather", "heel"], k=2)
    assert first.ids.tolist() == again.ids.tolist()
    # (leather, heel) patterns 00, 10, 11 in that order; no shoe has a heel without leather
    assert first.keys == ("not leather & not heel", "leather & not heel", "leather & heel")
    assert first.ids.tolist() == [2, 1, 0, 0, 1, 0, 1, 2]


def test_missing_values_give_counted_singletons() -> None:
    table = TABLE.copy()
    table["leather"] = table["leather"].astype(float)
    table.loc[[2, 5], "leather"] = np.nan
    result = attribute_clusters(table, ["leather", "heel"], k=2)
    assert result.provenance["n_missing_rows"] == 2
    assert result.sizes[result.ids[2]] == 1 and result.sizes[result.ids[5]] == 1
    assert result.ids[2] != result.ids[5]
    assert result.keys[result.ids[2]] == "<singleton:2>"
    # a missing value in an attribute outside the top k does not matter
    top1 = attribute_clusters(table, ["leather", "heel"], k=1)
    assert top1.provenance["attributes"] == ["heel"]  # leather, with two rows missing, ranks below heel
    assert top1.provenance["n_missing_rows"] == 0


def test_tags_from_strings_and_lists() -> None:
    table = pd.DataFrame(
        {"tags": ["#beach #sunset", "#beach,#city", ["#city"], "", None, "#beach;#sunset #beach"]}
    )
    attributes = binarize(table, tags=["tags"])
    assert attributes.names == ("tags:#beach", "tags:#city", "tags:#sunset")
    assert attributes.columns(np.arange(3)).astype(int).tolist() == [
        [1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1],
    ]  # fmt: skip
    result = attribute_clusters(table, tags=["tags"], k=3)
    assert result.provenance["n_missing_rows"] == 1  # the None row; the empty string has no tags
    assert result.ids[0] == result.ids[5] and len(set(result.ids.tolist())) == 5
    # over the 5 present rows beach 3/5, city 2/5, sunset 2/5: one entropy, ties keep the tag order
    assert result.provenance["attributes"] == ["tags:#beach", "tags:#city", "tags:#sunset"]
    assert result.keys[result.ids[0]] == "tags:#beach & no tags:#city & tags:#sunset"
    assert result.keys[result.ids[3]] == "no tags:#beach & no tags:#city & no tags:#sunset"
    assert result.keys[result.ids[4]] == "<singleton:4>"
    top = binarize(table, tags=["tags"], top_tags=2)
    assert top.names == ("tags:#beach", "tags:#city")  # 3 and 2 uses beat sunset's 2 by text order


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["nope"], "k": 1}, "unknown column"),
        ({"columns": ["leather", "leather"], "k": 1}, "more than once"),
        ({"columns": ["leather"], "k": 2}, r"k must be an integer in 1\.\.1"),
        ({"columns": ["leather"], "k": 0}, "k must be"),
        ({"columns": [], "k": 1}, "no attribute"),
    ],
)
def test_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        attribute_clusters(TABLE, **kwargs)


def test_identifier_like_column_is_rejected() -> None:
    table = pd.DataFrame({"id": [f"row{i}" for i in range(1500)]})
    with pytest.raises(ValueError, match="1500 distinct values"):
        binarize(table, ["id"])


def test_nullable_dtypes() -> None:
    table = pd.DataFrame(
        {"a": pd.array([1, 0, None, 1], dtype="Int64"), "b": pd.array([True, None, False, True])}
    )
    result = attribute_clusters(table, ["a", "b"], k=2)
    assert result.provenance["n_missing_rows"] == 2
    assert result.ids[0] == result.ids[3]


def test_two_valued_column_counts_once() -> None:
    # color: blue x2, red x4 -> one attribute color=blue (first in sorted order), p = 2/6
    # shape: 3 values -> three one-hot attributes; round p = 3/6, square 2/6, star 1/6
    table = pd.DataFrame(
        {
            "color": ["red", "blue", "red", "red", "blue", "red"],
            "shape": ["round", "round", "square", "star", "square", "round"],
            "shiny": [True, True, False, False, False, True],  # p = 3/6
        }
    )
    attributes = binarize(table, ["color", "shape", "shiny"])
    assert attributes.names == ("color=blue", "shape=round", "shape=square", "shape=star", "shiny")
    assert attributes.values[:, 0].tolist() == [False, True, False, False, True, False]
    ranking = rank_attributes(attributes)
    # h(1/2) = 1 for shape=round, shiny; h(1/3) for color=blue, shape=square; h(1/6) for shape=star
    assert ranking.names == ("shape=round", "shiny", "color=blue", "shape=square", "shape=star")
    assert ranking.entropy_bits == pytest.approx([1.0, 1.0, h(1 / 3), h(1 / 3), h(1 / 6)])
    result = attribute_clusters(table, ["color", "shape", "shiny"], k=3)
    assert result.provenance["attributes"] == ["shape=round", "shiny", "color=blue"]
    # rows as (round, shiny, blue): 110, 111, 000, 000, 001, 110 -> patterns 000, 001, 110, 111
    assert result.keys == (
        "shape!=round & not shiny & color=red",
        "shape!=round & not shiny & color=blue",
        "shape=round & shiny & color=red",
        "shape=round & shiny & color=blue",
    )
    assert result.ids.tolist() == [2, 3, 0, 0, 1, 2]


def test_category_key_of_a_column_whose_name_holds_an_equals_sign() -> None:
    table = pd.DataFrame({"a=b": ["x", "y", "z", "x"]})
    result = attribute_clusters(table, ["a=b"], k=1)
    assert result.provenance["attributes"] == ["a=b=x"]  # p = 1/2
    assert result.keys == ("a=b!=x", "a=b=x")
