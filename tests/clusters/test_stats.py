"""cluster_stats against hand-computed cases and scikit-learn's mutual information."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score

from clinfonce.clusters.stats import (
    SAME_AS_LABELS_WARNING,
    SINGLE_CLUSTER_WARNING,
    cluster_stats,
    clustering_warnings,
)


def test_perfect_clustering() -> None:
    stats = cluster_stats([0, 0, 1, 1], ["a", "a", "b", "b"])
    assert (stats.H_Z, stats.H_T, stats.I_Z_T, stats.H_Z_given_T, stats.H_T_given_Z) == pytest.approx(
        (1.0, 1.0, 1.0, 0.0, 0.0)
    )
    assert stats.purity == 1.0 and stats.n_clusters == 2 and stats.n_labels == 2


def test_one_cluster_carries_no_information() -> None:
    stats = cluster_stats([7, 7, 7, 7], [0, 1, 0, 1])
    assert stats.H_Z == 0.0 and stats.I_Z_T == 0.0
    assert stats.H_T_given_Z == pytest.approx(1.0)
    assert stats.purity == 0.5
    assert any("one cluster" in note for note in stats.recommendations())


def test_singletons_split_every_label() -> None:
    # 4 singleton clusters over 2 labels: H(Z) = 2, H(Z|T) = 1, I = H(T) = 1
    stats = cluster_stats([10, 11, 12, 13], [0, 0, 1, 1])
    assert (stats.H_Z, stats.H_Z_given_T, stats.I_Z_T) == pytest.approx((2.0, 1.0, 1.0))
    assert stats.singleton_fraction == 1.0 and stats.samples_in_singletons == 1.0
    assert stats.size_percentiles == {"min": 1.0, "p10": 1.0, "p50": 1.0, "p90": 1.0, "max": 1.0}


def test_hand_computed_uneven_case() -> None:
    # Z: a a a b, T: x x y y -> joint {(a,x):2, (a,y):1, (b,y):1}
    stats = cluster_stats(["a", "a", "a", "b"], ["x", "x", "y", "y"])
    h = lambda *p: -sum(q * math.log2(q) for q in p)  # noqa: E731
    assert stats.H_Z == pytest.approx(h(0.75, 0.25))
    assert stats.H_T == pytest.approx(1.0)
    assert stats.H_Z_given_T == pytest.approx(h(0.5, 0.25, 0.25) - 1.0)
    assert stats.H_T_given_Z == pytest.approx(h(0.5, 0.25, 0.25) - h(0.75, 0.25))
    assert stats.purity == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn_mutual_information(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, 3000)
    clusters = (labels // 3) * 100 + rng.integers(0, 5, 3000)  # informative but noisy
    stats = cluster_stats(clusters, labels)
    assert stats.I_Z_T == pytest.approx(mutual_info_score(labels, clusters) / math.log(2), rel=1e-9)
    counts_t = np.bincount(labels)
    assert stats.H_T == pytest.approx(-(counts_t / 3000 * np.log2(counts_t / 3000)).sum())
    assert stats.H_Z - stats.H_Z_given_T == pytest.approx(stats.I_Z_T)  # I is symmetric
    table = pd.crosstab(clusters, labels)
    assert stats.purity == pytest.approx(table.max(axis=1).sum() / 3000)


def test_to_dict_has_the_documented_fields() -> None:
    fields = cluster_stats([0, 1, 1], [0, 1, 1]).to_dict()
    # by hand: the clusters are the labels, sizes 1 and 2, so H(Z) = H(T) = I(Z;T) = h(1/3), H(Z|T) = H(T|Z) = 0
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    assert (fields["n"], fields["n_clusters"]) == (3, 2)
    assert (fields["H_Z"], fields["H_T"], fields["I_Z_T"]) == pytest.approx((h, h, h), abs=1e-12)
    assert (fields["H_Z_given_T"], fields["H_T_given_Z"]) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert fields["size_percentiles"]["min"] == 1 and fields["size_percentiles"]["max"] == 2


@pytest.mark.parametrize(
    ("clusters", "labels", "message"),
    [
        ([0, 1], [0], "2 cluster ids but 1 labels"),
        ([], [], "no samples"),
        ([0, 1], [0, None], "missing label"),
    ],
)
def test_errors(clusters, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_stats(clusters, labels)


def test_warning_when_the_clusters_are_the_labels() -> None:
    # same partition, other names: {0,1} {2} {3,4} vs labels b b a c c
    stats = cluster_stats([7, 7, 3, 5, 5], ["b", "b", "a", "c", "c"])
    assert stats.same_as_labels and stats.n_pairs == 3
    assert stats.warnings() == [SAME_AS_LABELS_WARNING]
    assert stats.recommendations()[0] == SAME_AS_LABELS_WARNING
    assert "SupCon" in SAME_AS_LABELS_WARNING
    # a coarser clustering (two labels merged), and a finer one (a label split), are not the labels
    for clusters in ([0, 0, 0, 1, 1], [0, 1, 2, 3, 3]):
        coarse_or_fine = cluster_stats(clusters, ["b", "b", "a", "c", "c"])
        assert not coarse_or_fine.same_as_labels and coarse_or_fine.warnings() == []
    # as many clusters as labels but crossing them: pairs (0,x) (0,y) (1,x) (1,y) -> 4 pairs
    crossed = cluster_stats([0, 0, 1, 1], ["x", "y", "x", "y"])
    assert crossed.n_pairs == 4 and not crossed.same_as_labels


def test_warning_for_one_cluster_also_without_labels() -> None:
    stats = cluster_stats([7, 7, 7], ["a", "b", "a"])
    assert stats.warnings() == [SINGLE_CLUSTER_WARNING]
    # one cluster over one label is the labels too, but the one-cluster warning says it all
    assert cluster_stats([1, 1], ["a", "a"]).warnings() == [SINGLE_CLUSTER_WARNING]
    assert clustering_warnings(["z", "z", "z"]) == [SINGLE_CLUSTER_WARNING]
    assert clustering_warnings([0, 1, 0]) == []
    assert clustering_warnings([0]) == []  # a single sample is not a degenerate clustering
    assert clustering_warnings([0, 1, 1], [5, 6, 6]) == [SAME_AS_LABELS_WARNING]
    # stats saved before n_pairs existed (n_pairs=0) never claim to be the labels
    old = cluster_stats([0, 1], ["a", "b"]).to_dict() | {"n_pairs": 0}
    assert not type(stats)(**old).same_as_labels
