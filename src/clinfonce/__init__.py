"""clinfonce: weakly-supervised contrastive representations (Cl-InfoNCE, ICLR 2022)."""

from clinfonce.clusters import ClusterAssignment

__version__ = "0.1.0"

__all__ = ["ClusterAssignment", "__version__"]
