"""Stage 1 as configured: cluster ids for the training rows of a dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinfonce.clusters import ClusterAssignment, WordNet, attribute_clusters, hierarchy_clusters
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError
from clinfonce.training.config import ClustersConfig


def build_clusters(
    dataset: ImageDataset, config: ClustersConfig, rows: np.ndarray
) -> ClusterAssignment | None:
    """Cluster the given table rows (the training split) as ``config.source`` says; None for ``none``.

    Returns an assignment with one id per row of ``rows``, in that order.
    """
    table = dataset.table.iloc[rows].reset_index(drop=True)
    source = config.source
    if source == "none":
        return None
    if source == "attributes":
        columns = list(config.attributes) if config.attributes is not None else list(dataset.aux.attributes)
        tags = list(config.tags) or list(dataset.aux.tags)
        if not columns and not tags:
            raise InputError(
                f"dataset {dataset.name!r} has no auxiliary attributes; set clusters.attributes or clusters.tags"
            )
        return attribute_clusters(table, columns, k=config.top_k, tags=tags, top_tags=config.top_tags)
    if source == "hierarchy":
        hierarchy = dataset.aux.hierarchy
        if hierarchy is None:
            raise InputError(
                f"dataset {dataset.name!r} has no class hierarchy; choose another clusters.source"
            )
        names = np.array(dataset.class_names, dtype=object)[table["label"].to_numpy()]
        parents = WordNet().parent_map(sorted(set(names))) if hierarchy == "wordnet" else hierarchy
        return hierarchy_clusters(names, parents, config.level, path_rule=config.path_rule)
    if source == "labels":
        return ClusterAssignment.from_tokens(table["label"].to_numpy(), {"method": "labels"})
    if source == "file":
        return _clusters_from_file(config.file, table)
    raise InputError(f"unknown clusters.source {source!r}")


def _clusters_from_file(path: str, table: pd.DataFrame) -> ClusterAssignment:
    """Clusters from a CSV written by ``clinfonce clusters``: matched on ``path`` when both the file and
    the dataset have that column, else by order (then the file must have one row per training image)."""
    frame = read_table(path)
    require_columns(frame, ["cluster"], path)
    provenance = {**ClusterAssignment.load_metadata(path).get("provenance", {}), "file": str(path)}
    if "path" in frame.columns and "path" in table.columns:
        by_path = dict(zip(frame["path"].astype(str), frame["cluster"], strict=True))
        missing = [p for p in table["path"].astype(str) if p not in by_path]
        if missing:
            raise InputError(f"{path}: no cluster for {len(missing)} training image(s), e.g. {missing[0]!r}")
        tokens = np.array([by_path[p] for p in table["path"].astype(str)])
        return ClusterAssignment.from_tokens(tokens, provenance)
    if len(frame) != len(table):
        raise InputError(f"{path}: {len(frame)} rows, but the training split has {len(table)} images")
    return ClusterAssignment.from_tokens(frame["cluster"].to_numpy(), provenance)


def full_length_ids(assignment: ClusterAssignment | None, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """``int64 [n_rows]``: the cluster of each table row, -1 for rows outside ``rows``."""
    ids = np.full(n_rows, -1, dtype=np.int64)
    if assignment is not None:
        ids[rows] = assignment.ids
    return ids
