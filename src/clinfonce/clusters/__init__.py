"""Stage 1: auxiliary information (or features) -> cluster ids."""

from clinfonce.clusters.assignment import ClusterAssignment

__all__ = ["ClusterAssignment"]
