"""Tag K-means against planted topics, its singletons and keys, through the builder and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clinfonce.clusters import ClusterSpec, build, parse_tags, tag_kmeans_clusters
from clinfonce.clusters.tag_kmeans import reduce_tag_vectors
from clinfonce.errors import InputError


def planted(n_per_topic: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Four topics with 30 tags of their own each; every image holds 3 of its topic's tags and the tag
    'common', which every image holds, plus one of 200 rare noise tags half of the time."""
    rng = np.random.default_rng(seed)
    cells, topics = [], []
    for topic in range(4):
        for _ in range(n_per_topic):
            own = [f"t{topic}_{i}" for i in rng.choice(30, size=3, replace=False)]
            noise = [f"noise{rng.integers(200)}"] if rng.random() < 0.5 else []
            cells.append(" ".join([*own, "common", *noise]))
            topics.append(topic)
    order = rng.permutation(len(cells))
    return pd.DataFrame({"tags": np.array(cells, dtype=object)[order]}), np.array(topics)[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = len(np.unique(a * (b.max() + 1) + b))
    return pairs == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("weighting", ["binary", "tfidf"])
def test_recovers_planted_topics(weighting: str) -> None:
    table, topics = planted()
    tags = parse_tags(table, ["tags"])
    clusters = tag_kmeans_clusters(tags, 4, dims=16, weighting=weighting)
    assert same_partition(clusters.ids, topics)
    for c, key in enumerate(clusters.keys):
        topic = topics[clusters.ids == c][0]
        named = key.split(" | ")
        assert len(named) == 3 and all(tag.startswith(f"tags:t{topic}_") for tag in named), key
    assert clusters.provenance["n_tag_clusters"] == 4 and clusters.provenance["dims"] == 16


def test_untagged_and_missing_rows_are_counted_singletons() -> None:
    table, topics = planted()
    table.loc[3, "tags"] = ""
    table.loc[7, "tags"] = None
    clusters = tag_kmeans_clusters(parse_tags(table, ["tags"]), 4, dims=16)
    assert clusters.provenance["n_untagged_rows"] == 1 and clusters.provenance["n_missing_rows"] == 1
    assert clusters.sizes[clusters.ids[3]] == 1 and clusters.sizes[clusters.ids[7]] == 1
    assert clusters.keys[clusters.ids[3]] == "<singleton:3>"
    rest = np.setdiff1d(np.arange(len(table)), [3, 7])
    assert same_partition(clusters.ids[rest], topics[rest])


def test_same_seed_same_clusters_and_k_checked() -> None:
    table, _ = planted(10, seed=1)
    tags = parse_tags(table, ["tags"])
    a = tag_kmeans_clusters(tags, 6, dims=8, seed=3)
    b = tag_kmeans_clusters(tags, 6, dims=8, seed=3)
    assert a.ids.tolist() == b.ids.tolist() and a.keys == b.keys
    with pytest.raises(InputError, match="only 40 image"):
        tag_kmeans_clusters(tags, 41)


def test_small_vocabulary_is_not_reduced() -> None:
    table = pd.DataFrame({"t": ["a b", "b", "c a", ""]})
    vectors = parse_tags(table, ["t"]).matrix
    reduced = reduce_tag_vectors(vectors, dims=8)
    dense = vectors.toarray()
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    np.testing.assert_allclose(reduced, dense / np.where(norms > 0, norms, 1), rtol=1e-6)


def test_builder_and_command_line(tmp_path) -> None:
    table, topics = planted()
    table["topic"] = topics
    path = tmp_path / "posts.csv"
    table.to_csv(path, index=False)
    spec = ClusterSpec(source="tag_kmeans", tags=["tags"], k=4, tag_dims=16)
    built = build(spec, table)
    assert same_partition(built.ids, topics)
    out = tmp_path / "clusters.csv"
    command = [sys.executable, "-m", "clinfonce", "clusters", "--table", str(path), "--source", "tag_kmeans",
               "--tags", "tags", "--k", "4", "--tag-dims", "16", "--label-col", "topic", "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(out)["cluster"].tolist() == built.ids.tolist()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["method"] == "tag_kmeans" and meta["keys"] == list(built.keys)
    bad = subprocess.run(
        [*command[:-2], "--tag-weighting", "bm25", "--out", str(out)], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2
        and "tag_weighting" in bad.stderr.replace("-", "_")
        and "Traceback" not in bad.stderr
    )
