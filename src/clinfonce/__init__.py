"""clinfonce: weakly-supervised contrastive representations (Cl-InfoNCE, ICLR 2022).

Stage 1 (:mod:`clinfonce.clusters`) turns auxiliary information into cluster ids; stage 2
(:class:`ClInfoNCELoss`) learns representations that are close within a cluster and far across clusters;
:func:`train`, :func:`evaluate` and :func:`load_encoder` (:mod:`clinfonce.api`) run the whole pipeline.

Names are imported on first use, so ``import clinfonce`` (and ``clinfonce --help``) stays fast and a
loss-only user never imports the training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfonce._lazy import lazy_exports

__version__ = "0.5.0"

#: public name -> the module that defines it
_EXPORTS = {
    "ClInfoNCELoss": "clinfonce.losses",
    "ClusterAssignment": "clinfonce.clusters",
    "ClusterStats": "clinfonce.clusters",
    "attribute_clusters": "clinfonce.clusters",
    "cluster": "clinfonce.clusters",
    "cluster_stats": "clinfonce.clusters",
    "hierarchy_clusters": "clinfonce.clusters",
    "kmeans_clusters": "clinfonce.clusters",
    "rank_attributes": "clinfonce.clusters",
    "InputError": "clinfonce.errors",
    "Encoder": "clinfonce.encoder",
    "Run": "clinfonce.run",
    "evaluate": "clinfonce.api",
    "load_encoder": "clinfonce.api",
    "embed": "clinfonce.retrieval",
    "train": "clinfonce.api",
}

__all__ = [  # the names of _EXPORTS (a test checks), written out for static tools
    "ClInfoNCELoss",
    "ClusterAssignment",
    "ClusterStats",
    "Encoder",
    "InputError",
    "Run",
    "__version__",
    "attribute_clusters",
    "cluster",
    "cluster_stats",
    "embed",
    "evaluate",
    "hierarchy_clusters",
    "kmeans_clusters",
    "load_encoder",
    "rank_attributes",
    "train",
]

if TYPE_CHECKING:
    from clinfonce.api import evaluate, load_encoder, train
    from clinfonce.clusters import (
        ClusterAssignment,
        ClusterStats,
        attribute_clusters,
        cluster,
        cluster_stats,
        hierarchy_clusters,
        kmeans_clusters,
        rank_attributes,
    )
    from clinfonce.encoder import Encoder
    from clinfonce.errors import InputError
    from clinfonce.losses import ClInfoNCELoss
    from clinfonce.retrieval import embed
    from clinfonce.run import Run


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
