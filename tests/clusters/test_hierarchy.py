"""Tests of stage 1 from a class hierarchy; expected clusters are worked out by hand from the trees below."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clinfonce.clusters.hierarchy import choose_path, hierarchy_clusters, root_paths

# root
# ├── animal
# │   ├── mammal ── dog, cat        (depth 3)
# │   └── fish ──── tench, goldfish (depth 3)
# ├── plant ─────── tree            (depth 2)
# └── fungus                        (depth 1, a class itself)
TREE = {
    "root": None,
    "animal": "root",
    "plant": ["root"],
    "fungus": "root",
    "mammal": "animal",
    "fish": "animal",
    "dog": "mammal",
    "cat": "mammal",
    "tench": "fish",
    "goldfish": "fish",
    "tree": "plant",
}
LABELS = ["dog", "cat", "tench", "goldfish", "tree", "fungus", "dog", "tree"]

# Ids are the ranks of the sorted tokens (ClusterAssignment.from_tokens), written out by hand.
EXPECTED = {
    0: (("root",), [0, 0, 0, 0, 0, 0, 0, 0], []),
    1: (("animal", "fungus", "plant"), [0, 0, 0, 0, 2, 1, 0, 2], []),
    2: (("fish", "fungus", "mammal", "tree"), [2, 2, 0, 0, 3, 1, 2, 3], ["fungus"]),
    3: (("cat", "dog", "fungus", "goldfish", "tench", "tree"), [1, 0, 4, 3, 5, 2, 1, 5], ["fungus", "tree"]),
}

# A DAG: "x" reaches the root by a long path (listed first) and a short one; "y" by two paths of equal
# length whose middle nodes are listed in reverse alphabetical order.
DAG = {
    "r": None,
    "long1": "r",
    "long2": "long1",
    "short": "r",
    "zeta": "r",
    "alpha": "r",
    "x": ["long2", "short"],
    "y": ["zeta", "alpha"],
    "z": "long2",
}


@pytest.mark.parametrize("level", sorted(EXPECTED))
def test_levels_by_hand(level):
    keys, ids, shallower = EXPECTED[level]
    result = hierarchy_clusters(LABELS, TREE, level)
    assert result.keys == keys
    assert result.ids.tolist() == ids
    assert result.provenance["classes_shallower_than_level"] == shallower
    assert result.provenance["n_classes_shallower_than_level"] == len(shallower)
    assert result.provenance["n_classes"] == 6
    assert result.provenance["method"] == "hierarchy"
    assert result.provenance["level"] == level
    assert result.provenance["n_missing"] == 0
    assert result.provenance["multi_path_classes"] == []
    json.dumps(result.provenance)


def test_level_zero_is_one_cluster():
    assert hierarchy_clusters(LABELS, TREE, 0).n_clusters == 1


def test_level_deeper_than_every_class_gives_one_cluster_per_class():
    result = hierarchy_clusters(LABELS, TREE, 10)
    assert result.keys == ("cat", "dog", "fungus", "goldfish", "tench", "tree")
    assert result.ids.tolist() == [1, 0, 4, 3, 5, 2, 1, 5]
    assert result.provenance["n_classes_shallower_than_level"] == 6


@pytest.mark.parametrize(
    ("parents", "labels"), [(TREE, LABELS), (DAG, ["x", "y", "z", "short", "x", "long1"])]
)
def test_each_level_refines_the_one_above(parents, labels):
    for level in range(5):
        coarse = hierarchy_clusters(labels, parents, level).ids
        fine = hierarchy_clusters(labels, parents, level + 1).ids
        for cluster in np.unique(fine):
            assert len(np.unique(coarse[fine == cluster])) == 1, (level, cluster)


def test_root_paths_of_a_tree_a_diamond_and_parent_only_roots():
    assert root_paths("dog", TREE) == [("root", "animal", "mammal", "dog")]
    assert root_paths("root", TREE) == [("root",)]
    diamond = {"b": "a", "c": ["a"], "d": ["b", "c"]}  # "a" is only a parent: a root
    assert root_paths("d", diamond) == [("a", "b", "d"), ("a", "c", "d")]
    assert root_paths("a", diamond) == [("a",)]
    two_roots = {"x": ("p", "q"), "p": [], "q": None}
    assert sorted(root_paths("x", two_roots)) == [("p", "x"), ("q", "x")]
    with pytest.raises(ValueError, match="'nowhere'"):
        root_paths("nowhere", TREE)


def test_choose_path_shortest_then_lexicographic():
    assert choose_path([("a", "b", "c", "x"), ("z", "x")], "shortest") == ("z", "x")
    assert choose_path([("r", "zeta", "y"), ("r", "alpha", "y")], "shortest") == ("r", "alpha", "y")
    same_length = [("r", "m", "b", "y"), ("r", "m", "a", "y"), ("q", "z", "z", "y")]
    assert choose_path(same_length, "shortest") == ("q", "z", "z", "y")  # decided at the root
    with pytest.raises(ValueError):
        choose_path([], "shortest")


def test_choose_path_first_takes_the_first_listed_path():
    assert choose_path([("a", "b", "c", "x"), ("z", "x")]) == ("a", "b", "c", "x")
    with pytest.raises(ValueError, match="path rule"):
        choose_path([("a",)], "longest")
    with pytest.raises(ValueError, match="path rule"):
        hierarchy_clusters(["x"], DAG, 1, path_rule="longest")


def test_dag_first_rule_follows_the_first_listed_parent():
    result = hierarchy_clusters(["x", "y", "z"], DAG, 1)
    # x lists long2 first -> (r, long1, long2, x); y lists zeta first -> (r, zeta, y); z -> long1.
    assert result.keys == ("long1", "zeta")
    assert result.ids.tolist() == [0, 1, 0]
    records = {record["class"]: record for record in result.provenance["multi_path_classes"]}
    assert records["x"]["chosen_path"] == ["r", "long1", "long2", "x"]
    assert result.provenance["ambiguous_at_level"] == ["x", "y"]
    assert result.provenance["path_rule"].startswith("first")


def test_dag_picks_the_shortest_path_and_reports_it():
    result = hierarchy_clusters(["x", "z"], DAG, 1, path_rule="shortest")
    # x: (r, long1, long2, x) and (r, short, x) -> the shorter one, although its parent is listed second.
    assert result.keys == ("long1", "short")
    assert result.ids.tolist() == [1, 0]
    assert result.provenance["multi_path_classes"] == [
        {"class": "x", "n_paths": 2, "chosen_path": ["r", "short", "x"], "ancestor": "short"}
    ]
    assert result.provenance["n_multi_path_classes"] == 1
    assert result.provenance["ambiguous_at_level"] == ["x"]  # the long path gives long1
    assert result.provenance["n_ambiguous_at_level"] == 1


@pytest.mark.parametrize(
    ("level", "ambiguous"),
    [(0, []), (1, ["x"]), (2, ["x"]), (3, [])],  # level 2: x itself vs long2; level 3: x on both paths
)
def test_ambiguity_depends_on_the_level(level, ambiguous):
    assert hierarchy_clusters(["x"], DAG, level).provenance["ambiguous_at_level"] == ambiguous


def test_dag_equal_lengths_pick_the_lexicographically_smallest_path():
    result = hierarchy_clusters(["y"], DAG, 1, path_rule="shortest")
    assert result.keys == ("alpha",)
    (record,) = result.provenance["multi_path_classes"]
    assert record == {"class": "y", "n_paths": 2, "chosen_path": ["r", "alpha", "y"], "ancestor": "alpha"}
    assert result.provenance["ambiguous_at_level"] == ["y"]


@pytest.mark.parametrize(
    ("parents", "node"),
    [
        ({"a": "b", "b": "a"}, "a"),
        ({"a": "a"}, "a"),
        ({"x": "a", "a": ["r", "b"], "b": "c", "c": "a", "r": None}, "x"),
    ],
)
def test_cycles_are_errors(parents, node):
    with pytest.raises(ValueError, match=r"cycle through '[abc]'"):
        root_paths(node, parents)
    with pytest.raises(ValueError, match="cycle"):
        hierarchy_clusters([node], parents, 1)


def test_unknown_class_is_an_error_but_a_parent_only_class_is_a_root():
    with pytest.raises(ValueError, match="'unicorn'"):
        hierarchy_clusters(["dog", "unicorn"], TREE, 1)
    result = hierarchy_clusters(["ghost", "x"], {"x": "ghost"}, 3)
    assert result.keys == ("ghost", "x")
    assert result.provenance["classes_shallower_than_level"] == ["ghost", "x"]


def test_missing_labels_get_singletons_and_are_counted():
    labels = ["dog", None, "cat", float("nan"), "tree", pd.NA]
    result = hierarchy_clusters(labels, TREE, 1)
    assert result.ids.tolist() == [0, 2, 0, 3, 1, 4]
    assert result.keys == ("animal", "plant", "<singleton:1>", "<singleton:3>", "<singleton:5>")
    assert result.provenance["n_missing"] == 3
    assert result.provenance["n_classes"] == 3
    series = pd.Series(["dog", np.nan, "tree"])
    assert hierarchy_clusters(series, TREE, 1).ids.tolist() == [0, 2, 1]
    assert hierarchy_clusters([None, None], TREE, 1).ids.tolist() == [0, 1]


@pytest.mark.parametrize("level", [-1, 1.0, 1.5, True, "2", None])
def test_bad_level(level):
    with pytest.raises(ValueError, match="level"):
        hierarchy_clusters(LABELS, TREE, level)


def test_ids_are_contiguous_and_independent_of_the_map_order():
    """With the shortest rule nothing depends on the order of the map or of the parent lists."""
    labels = np.array(["x", "y", "z", "short", "long2", "y", "x"])
    first = hierarchy_clusters(labels, DAG, np.int64(1), path_rule="shortest")
    again = hierarchy_clusters(labels, DAG, 1, path_rule="shortest")
    shuffled = {name: DAG[name] for name in reversed(list(DAG))}
    shuffled["x"] = ["short", "long2"]
    shuffled["y"] = ["alpha", "zeta"]
    permuted = hierarchy_clusters(labels, shuffled, 1, path_rule="shortest")
    for other in (again, permuted):
        assert other.ids.tolist() == first.ids.tolist()
        assert other.keys == first.keys
        assert other.provenance == first.provenance
    assert sorted(set(first.ids.tolist())) == list(range(first.n_clusters))
    # x -> short, y -> alpha, z -> long1, short -> short, long2 -> long1
    assert first.keys == ("alpha", "long1", "short")
    assert first.ids.tolist() == [2, 0, 1, 2, 1, 0, 2]


def test_names_go_next_to_the_keys_and_leave_the_ids_alone():
    labels = ["dog", None, "tench", "tree", "cat"]
    plain = hierarchy_clusters(labels, TREE, 2)
    # a mapping that lacks "tree" (and a function) name some nodes; the ids are those of the plain keys
    names = {"mammal": "Mammalia", "fish": "Pisces"}
    named = hierarchy_clusters(labels, TREE, 2, names=names)
    assert plain.keys == ("fish", "mammal", "tree", "<singleton:1>")
    assert named.keys == ("fish (Pisces)", "mammal (Mammalia)", "tree", "<singleton:1>")
    assert named.ids.tolist() == plain.ids.tolist() == [1, 3, 0, 2, 1]
    upper = hierarchy_clusters(labels, TREE, 2, names=str.upper)
    assert upper.keys == ("fish (FISH)", "mammal (MAMMAL)", "tree (TREE)", "<singleton:1>")
    assert upper.provenance == plain.provenance
