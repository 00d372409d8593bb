"""How good is a clustering for a downstream task? Information-theoretic statistics, before any training.

With Z the cluster of a sample and T its downstream label, over the empirical joint distribution of
(Z, T), in bits: H(Z), H(T), H(Z|T), H(T|Z) and I(Z;T) = H(T) - H(T|Z). The paper finds accuracy rises with
I(Z;T) (clusters that say much about the label) and falls with H(Z|T) (clusters that split a label into many
pieces); adding attributes raises both, so there is a sweet spot.

Two clusterings defeat the purpose and are warned about (:meth:`ClusterStats.warnings`,
:func:`clustering_warnings`): one cluster holding every sample (Cl-InfoNCE then pulls every image towards
every other: it teaches nothing), and clusters that are the labels themselves, i.e. the same partition of
the samples as the label column (Cl-InfoNCE is then SupCon, supervised contrastive learning).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clinfonce.errors import InputError


@dataclass(frozen=True)
class ClusterStats:
    """Statistics of a clustering Z against labels T (entropies in bits).

    Attributes:
        n: number of samples.
        n_clusters: distinct clusters.
        n_labels: distinct labels.
        H_Z, H_T, H_Z_given_T, H_T_given_Z, I_Z_T: entropies and mutual information, in bits.
        purity: fraction of samples whose label is the majority label of their cluster.
        singleton_fraction: fraction of clusters with one member.
        samples_in_singletons: fraction of samples alone in their cluster (they reduce to SimCLR).
        size_percentiles: cluster-size percentiles ``min, p10, p50, p90, max``.
        n_pairs: distinct (cluster, label) pairs; the clusters are the labels exactly when
            ``n_pairs == n_clusters == n_labels``. 0 when unknown.
    """

    n: int
    n_clusters: int
    n_labels: int
    H_Z: float
    H_T: float
    H_Z_given_T: float
    H_T_given_Z: float
    I_Z_T: float
    purity: float
    singleton_fraction: float
    samples_in_singletons: float
    size_percentiles: dict[str, float] = field(default_factory=dict)
    n_pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with the field names above."""
        return asdict(self)

    @property
    def same_as_labels(self) -> bool:
        """Whether the clusters are the same partition of the samples as the labels (names aside)."""
        return self.n_pairs > 0 and self.n_pairs == self.n_clusters == self.n_labels

    def warnings(self) -> list[str]:
        """The clusterings Cl-InfoNCE cannot learn from as intended: one cluster, or the labels themselves."""
        if self.n_clusters == 1:
            return [SINGLE_CLUSTER_WARNING] if self.n > 1 else []
        return [SAME_AS_LABELS_WARNING] if self.same_as_labels else []

    def recommendations(self) -> list[str]:
        """Plain-language warnings about clusterings that will not help Cl-InfoNCE: :meth:`warnings`
        first, then milder notes."""
        notes = self.warnings()
        if self.samples_in_singletons > 0.5:
            notes.append(
                f"{self.samples_in_singletons:.0%} of samples are alone in their cluster, where Cl-InfoNCE "
                "reduces to SimCLR; use fewer attributes (smaller k) or a coarser level"
            )
        if self.H_T > 0 and self.I_Z_T / self.H_T < 0.05:
            notes.append("the clusters say almost nothing about the labels (I(Z;T) < 5% of H(T))")
        return notes

    def summary_lines(self, warnings: bool = True) -> list[str]:
        """What ``clinfonce stats`` prints: the numbers, then ``warning:`` lines (unless ``warnings`` is
        False: the caller said them) and ``note:`` lines."""
        lines = [
            f"n={self.n}  clusters={self.n_clusters}  labels={self.n_labels}",
            f"H(Z)={self.H_Z:.3f}  H(T)={self.H_T:.3f}  H(Z|T)={self.H_Z_given_T:.3f}  "
            f"H(T|Z)={self.H_T_given_Z:.3f}  I(Z;T)={self.I_Z_T:.3f} bits",
            f"purity={self.purity:.3f}  singleton clusters={self.singleton_fraction:.1%}  "
            f"cluster size p50={self.size_percentiles['p50']:.0f} max={self.size_percentiles['max']:.0f}",
        ]
        severe = self.warnings()
        if warnings:
            lines += [f"warning: {warning}" for warning in severe]
        return lines + [f"note: {note}" for note in self.recommendations() if note not in severe]


SINGLE_CLUSTER_WARNING = (
    "one cluster holds every sample: Cl-InfoNCE then pulls every image together and teaches nothing; "
    "use more attributes or a deeper level"
)
SAME_AS_LABELS_WARNING = (
    "the clusters are the labels themselves (the same partition as the label column): Cl-InfoNCE is "
    "then SupCon, supervised contrastive learning"
)


def clustering_warnings(
    cluster_ids: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray | None = None
) -> list[str]:
    """:meth:`ClusterStats.warnings` of a clustering, also without labels (then only the one-cluster check).

    Args:
        cluster_ids: ``[N]`` cluster tokens.
        labels: optional ``[N]`` labels, none missing (rows without a label must be left out beforehand).
    """
    if labels is not None:
        return cluster_stats(cluster_ids, labels).warnings()
    values = np.asarray(cluster_ids)
    return [SINGLE_CLUSTER_WARNING] if len(values) > 1 and len(_codes(values)[1]) == 1 else []


def cluster_stats(
    cluster_ids: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray
) -> ClusterStats:
    """Compute :class:`ClusterStats` of ``cluster_ids`` against ``labels``.

    Args:
        cluster_ids: ``[N]`` cluster tokens (any comparable values).
        labels: ``[N]`` downstream labels (any comparable values).

    Raises:
        InputError: lengths differ, N = 0, or a label or cluster id is missing (NaN / None).
    """
    z_values, t_values = np.asarray(cluster_ids), np.asarray(labels)
    if z_values.ndim != 1 or t_values.ndim != 1:
        raise InputError("cluster ids and labels must be one-dimensional")
    if len(z_values) != len(t_values):
        raise InputError(f"{len(z_values)} cluster ids but {len(t_values)} labels")
    if len(z_values) == 0:
        raise InputError("no samples")
    for name, values in (("cluster id", z_values), ("label", t_values)):
        missing = pd.isna(values)
        if missing.any():
            raise InputError(
                f"{int(missing.sum())} missing {name}(s), first at row {int(np.flatnonzero(missing)[0])}"
            )
    z_codes, z_sizes = _codes(z_values)
    t_codes, t_sizes = _codes(t_values)
    joint = np.unique(z_codes * len(t_sizes) + t_codes, return_counts=True)
    joint_counts = joint[1]
    h_z, h_t, h_zt = _entropy(z_sizes), _entropy(t_sizes), _entropy(joint_counts)
    majority = np.zeros(len(z_sizes), dtype=np.int64)
    np.maximum.at(majority, joint[0] // len(t_sizes), joint_counts)
    n = len(z_values)
    percentiles = np.percentile(z_sizes, [0, 10, 50, 90, 100])
    h_t_given_z = max(h_zt - h_z, 0.0)
    return ClusterStats(
        n=n,
        n_clusters=len(z_sizes),
        n_labels=len(t_sizes),
        H_Z=h_z,
        H_T=h_t,
        H_Z_given_T=max(h_zt - h_t, 0.0),
        H_T_given_Z=h_t_given_z,
        I_Z_T=max(h_t - h_t_given_z, 0.0),
        purity=float(majority.sum() / n),
        singleton_fraction=float(np.mean(z_sizes == 1)),
        samples_in_singletons=float(np.sum(z_sizes == 1) / n),
        size_percentiles={
            name: float(value)
            for name, value in zip(("min", "p10", "p50", "p90", "max"), percentiles, strict=True)
        },
        n_pairs=len(joint_counts),
    )


def table_stats(path: str | os.PathLike, cluster_col: str, label_col: str) -> ClusterStats:
    """:func:`cluster_stats` of one column of a table file (the clusters) against another (the labels).

    Raises:
        InputError: the file cannot be read, a column is missing, or a label is missing (naming its row).
    """
    from clinfonce.data.tables import read_table, require_columns

    table = read_table(path)
    require_columns(table, [cluster_col, label_col], path)
    missing = table[label_col].isna().to_numpy()
    if missing.any():
        raise InputError(
            f"{path}: column {label_col!r} has {int(missing.sum())} missing value(s), "
            f"first at row {int(np.flatnonzero(missing)[0])}"
        )
    return cluster_stats(table[cluster_col].to_numpy(), table[label_col].to_numpy())


def labelled_cluster_stats(cluster_ids: np.ndarray, labels: np.ndarray) -> ClusterStats | None:
    """:func:`cluster_stats` over the rows with a label (``int`` labels, -1: none); None when no row has
    one.

    Args:
        cluster_ids: ``int64 [N]`` cluster ids.
        labels: ``int64 [N]`` dataset labels, -1 where a row has none.
    """
    labelled = np.asarray(labels) >= 0
    if not labelled.any():
        return None
    return cluster_stats(np.asarray(cluster_ids)[labelled], np.asarray(labels)[labelled])


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int64 [N], counts int64 [K])`` of the distinct values."""
    if values.dtype == object:
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64), np.bincount(codes, minlength=len(uniques))
    _, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
    return codes.reshape(-1).astype(np.int64), counts


def _entropy(counts: np.ndarray) -> float:
    """Entropy in bits of the distribution given by positive ``counts``."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())
