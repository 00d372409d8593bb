"""Stage 1: auxiliary information (or the model's own features) -> cluster ids.

Every function returns a :class:`ClusterAssignment` (contiguous ids, keys, provenance). Names are imported
on first use (``clinfonce.clusters.spec`` alone needs no numerical library).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfonce._lazy import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "ClusterAssignment": "clinfonce.clusters.assignment",
    "AttributeRanking": "clinfonce.clusters.attributes",
    "BinaryAttributes": "clinfonce.clusters.attributes",
    "attribute_clusters": "clinfonce.clusters.attributes",
    "binarize": "clinfonce.clusters.attributes",
    "rank_attributes": "clinfonce.clusters.attributes",
    "attribute_targets": "clinfonce.clusters.builder",
    "build": "clinfonce.clusters.builder",
    "build_for_dataset": "clinfonce.clusters.builder",
    "Clustering": "clinfonce.clusters.clustering",
    "cluster": "clinfonce.clusters.clustering",
    "clusters_from_file": "clinfonce.clusters.builder",
    "read_parents": "clinfonce.clusters.builder",
    "tag_vectors": "clinfonce.clusters.builder",
    "tag_vectors_for_dataset": "clinfonce.clusters.builder",
    "TagMatrix": "clinfonce.clusters.tags",
    "parse_tags": "clinfonce.clusters.tags",
    "tag_kmeans_clusters": "clinfonce.clusters.tag_kmeans",
    "hierarchy_clusters": "clinfonce.clusters.hierarchy",
    "root_paths": "clinfonce.clusters.hierarchy",
    "KMeansResult": "clinfonce.clusters.kmeans",
    "fit_kmeans": "clinfonce.clusters.kmeans",
    "kmeans_clusters": "clinfonce.clusters.kmeans",
    "ClusterSpec": "clinfonce.clusters.spec",
    "ClusterStats": "clinfonce.clusters.stats",
    "cluster_stats": "clinfonce.clusters.stats",
    "labelled_cluster_stats": "clinfonce.clusters.stats",
    "clustering_warnings": "clinfonce.clusters.stats",
    "WordNet": "clinfonce.clusters.wordnet",
}

__all__ = [  # the names of _EXPORTS (a test checks), written out for static tools
    "AttributeRanking",
    "BinaryAttributes",
    "ClusterAssignment",
    "ClusterSpec",
    "ClusterStats",
    "Clustering",
    "KMeansResult",
    "TagMatrix",
    "WordNet",
    "attribute_clusters",
    "attribute_targets",
    "binarize",
    "build",
    "build_for_dataset",
    "cluster",
    "cluster_stats",
    "clustering_warnings",
    "clusters_from_file",
    "fit_kmeans",
    "hierarchy_clusters",
    "kmeans_clusters",
    "labelled_cluster_stats",
    "parse_tags",
    "rank_attributes",
    "read_parents",
    "root_paths",
    "tag_kmeans_clusters",
    "tag_vectors",
    "tag_vectors_for_dataset",
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
        tag_vectors,
        tag_vectors_for_dataset,
    )
    from clinfonce.clusters.clustering import Clustering, cluster
    from clinfonce.clusters.hierarchy import hierarchy_clusters, root_paths
    from clinfonce.clusters.kmeans import KMeansResult, fit_kmeans, kmeans_clusters
    from clinfonce.clusters.spec import ClusterSpec
    from clinfonce.clusters.stats import (
        ClusterStats,
        cluster_stats,
        clustering_warnings,
        labelled_cluster_stats,
    )
    from clinfonce.clusters.tag_kmeans import tag_kmeans_clusters
    from clinfonce.clusters.tags import TagMatrix, parse_tags
    from clinfonce.clusters.wordnet import WordNet


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
