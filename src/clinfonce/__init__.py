"""clinfonce: weakly-supervised contrastive representations (Cl-InfoNCE, ICLR 2022).

Stage 1 (:mod:`clinfonce.clusters`) turns auxiliary information into cluster ids; stage 2
(:class:`ClInfoNCELoss`) learns representations that are close within a cluster and far across clusters.
"""

from clinfonce.clusters import (
    ClusterAssignment,
    ClusterStats,
    attribute_clusters,
    cluster_stats,
    hierarchy_clusters,
    kmeans_clusters,
    rank_attributes,
)
from clinfonce.errors import InputError
from clinfonce.losses import ClInfoNCELoss

__version__ = "0.2.0"

__all__ = [
    "ClInfoNCELoss",
    "ClusterAssignment",
    "ClusterStats",
    "InputError",
    "__version__",
    "attribute_clusters",
    "cluster_stats",
    "hierarchy_clusters",
    "kmeans_clusters",
    "rank_attributes",
]
