"""Stage 1: auxiliary information (or the model's own features) -> cluster ids.

Every function returns a :class:`ClusterAssignment` (contiguous ids, keys, provenance).
"""

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.attributes import (
    AttributeRanking,
    BinaryAttributes,
    attribute_clusters,
    binarize,
    rank_attributes,
)
from clinfonce.clusters.build import (
    attribute_targets,
    build,
    build_for_dataset,
    clusters_from_file,
    read_parents,
)
from clinfonce.clusters.hierarchy import hierarchy_clusters, root_paths
from clinfonce.clusters.kmeans import KMeansResult, fit_kmeans, kmeans_clusters
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.clusters.stats import ClusterStats, cluster_stats, clustering_warnings
from clinfonce.clusters.wordnet import WordNet

__all__ = [
    "AttributeRanking",
    "BinaryAttributes",
    "ClusterAssignment",
    "ClusterSpec",
    "ClusterStats",
    "KMeansResult",
    "WordNet",
    "attribute_clusters",
    "attribute_targets",
    "binarize",
    "build",
    "build_for_dataset",
    "cluster_stats",
    "clustering_warnings",
    "clusters_from_file",
    "fit_kmeans",
    "hierarchy_clusters",
    "kmeans_clusters",
    "rank_attributes",
    "read_parents",
    "root_paths",
]
