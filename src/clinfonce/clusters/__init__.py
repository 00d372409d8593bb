"""Stage 1: auxiliary information (or the model's own features) -> cluster ids.

Every function returns a :class:`ClusterAssignment` (contiguous ids, keys, provenance). Names are imported
on first use (``clinfonce.clusters.spec`` alone needs no numerical library).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module of this package that defines it
_EXPORTS = {
    "ClusterAssignment": "assignment",
    "AttributeRanking": "attributes",
    "BinaryAttributes": "attributes",
    "attribute_clusters": "attributes",
    "binarize": "attributes",
    "rank_attributes": "attributes",
    "attribute_targets": "builder",
    "build": "builder",
    "build_for_dataset": "builder",
    "clusters_from_file": "builder",
    "read_parents": "builder",
    "hierarchy_clusters": "hierarchy",
    "root_paths": "hierarchy",
    "KMeansResult": "kmeans",
    "fit_kmeans": "kmeans",
    "kmeans_clusters": "kmeans",
    "ClusterSpec": "spec",
    "ClusterStats": "stats",
    "cluster_stats": "stats",
    "clustering_warnings": "stats",
    "WordNet": "wordnet",
}

__all__ = [  # the names of _EXPORTS (a test checks), written out for static tools
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

if TYPE_CHECKING:
    from clinfonce.clusters.assignment import ClusterAssignment
    from clinfonce.clusters.attributes import (
        AttributeRanking,
        BinaryAttributes,
        attribute_clusters,
        binarize,
        rank_attributes,
    )
    from clinfonce.clusters.builder import (
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clinfonce.clusters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"clinfonce.clusters.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
