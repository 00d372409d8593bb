"""clinfonce: weakly-supervised contrastive representations (Cl-InfoNCE, ICLR 2022)."""

from clinfonce.clusters import ClusterAssignment
from clinfonce.losses import ClInfoNCELoss

__version__ = "0.1.0"

__all__ = ["ClInfoNCELoss", "ClusterAssignment", "__version__"]
