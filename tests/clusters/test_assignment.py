"""ClusterAssignment: deterministic remapping, validation, and save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clinfonce.clusters.assignment import ClusterAssignment


def test_from_tokens_numbers_clusters_in_sorted_token_order() -> None:
    result = ClusterAssignment.from_tokens(["pear", "apple", "pear", "fig"], {"method": "test"})
    assert result.ids.tolist() == [2, 0, 2, 1]
    assert result.keys == ("apple", "fig", "pear")
    assert result.sizes.tolist() == [1, 1, 2]
    assert result.ids.dtype == np.int64


def test_singleton_rows_come_after_the_regular_clusters_in_row_order() -> None:
    rows = np.array([False, True, False, True])
    result = ClusterAssignment.from_tokens([5, 99, 5, 99], {}, singleton_rows=rows)
    assert result.ids.tolist() == [0, 1, 0, 2]
    assert result.keys == ("5", "<singleton:1>", "<singleton:3>")


def test_rejects_non_contiguous_or_bad_ids() -> None:
    with pytest.raises(ValueError, match="not contiguous"):
        ClusterAssignment(ids=np.array([0, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        ClusterAssignment(ids=np.array([-1, 0]))
    with pytest.raises(ValueError, match="integers"):
        ClusterAssignment(ids=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="keys"):
        ClusterAssignment(ids=np.array([0, 1]), keys=("a",))
    with pytest.raises(TypeError):
        ClusterAssignment(ids=np.array([0]), provenance={"bad": object()})


def test_save_and_load_round_trip(tmp_path) -> None:
    result = ClusterAssignment.from_tokens(["b", "a", "b"], {"method": "test", "k": np.int64(3)})
    json_path = result.save(tmp_path / "clusters.csv", columns={"path": ["x.png", "y.png", "z.png"]})
    assert (tmp_path / "clusters.csv").read_text().splitlines() == [
        "path,cluster",
        "x.png,1",
        "y.png,0",
        "z.png,1",
    ]
    meta = json.loads(json_path.read_text())
    assert meta["provenance"] == {"method": "test", "k": 3}
    assert meta["keys"] == ["a", "b"] and meta["n_clusters"] == 2
    loaded = ClusterAssignment.load(tmp_path / "clusters.csv")
    assert loaded.ids.tolist() == result.ids.tolist() and loaded.keys == result.keys
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clusters.csv",
        "clusters.json",
    ]  # no temp files left


def test_save_with_wrong_column_length_writes_nothing(tmp_path) -> None:
    result = ClusterAssignment.from_tokens([1, 2], {})
    with pytest.raises(ValueError, match="rows"):
        result.save(tmp_path / "c.csv", columns={"path": ["only-one"]})
    assert list(tmp_path.iterdir()) == []
