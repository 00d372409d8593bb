"""The one stage-1 builder: a :class:`~clinfonce.clusters.spec.ClusterSpec` plus the data -> cluster ids.

Both ``clinfonce clusters`` and training call :func:`build`, so a clustering made on the command line and
one made from a config with the same settings are the same clustering.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.attributes import (
    BinaryAttributes,
    TopKError,
    attribute_clusters,
    binarize,
    rank_attributes,
)
from clinfonce.clusters.hierarchy import Parents, hierarchy_clusters
from clinfonce.clusters.kmeans import kmeans_clusters
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.clusters.tag_kmeans import tag_kmeans_clusters
from clinfonce.clusters.tags import TagMatrix
from clinfonce.clusters.wordnet import WordNet
from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError, one_line


def build(
    spec: ClusterSpec,
    table: pd.DataFrame,
    aux: AuxInfo | None = None,
    *,
    classes: Sequence[Any] | np.ndarray | None = None,
    features: np.ndarray | None = None,
    name: str = "the data",
) -> ClusterAssignment | None:
    """Cluster the N rows of ``table`` as ``spec`` says; None when ``spec.source`` is ``none``.

    Args:
        spec: the cluster specification (checked here).
        table: ``[N]`` rows with the auxiliary columns (and ``path`` for ``source=file``).
        aux: the auxiliary information the data carries (its own attributes, tags, hierarchy), or None.
        classes: ``[N]`` class name of each row (None / NaN where unknown), for ``hierarchy`` and ``labels``.
        features: ``[N, D]`` features for ``kmeans``; default: the ``spec.features`` file.
        name: what the data is called in messages, e.g. ``"dataset 'cub200'"``.

    Returns:
        One cluster id per row of ``table``, in table order, with the provenance of how it was made.
    """
    spec.check()
    source = spec.source
    if source == "none":
        return None
    if source == "attributes":
        return _attributes(spec, table, aux, name)
    if source == "tag_kmeans":
        return tag_kmeans_clusters(
            tag_vectors(spec, table, aux, name),
            spec.k,
            dims=spec.tag_dims,
            weighting=spec.tag_weighting,
            seed=spec.seed,
            nredo=spec.restarts,
            max_points_per_centroid=spec.points_per_centroid,
        )
    if source == "hierarchy":
        return _hierarchy(spec, _require_classes(classes, table, name, source), aux, name)
    if source == "labels":
        labels = np.asarray(_require_classes(classes, table, name, source), dtype=object)
        missing = np.asarray(pd.isna(labels), dtype=bool)
        return ClusterAssignment.from_tokens(
            labels.astype(str), {"method": "labels", "n_missing": int(missing.sum())}, singleton_rows=missing
        )
    if source == "file":
        return clusters_from_file(spec.file, table)
    return _kmeans(spec, table, features)


def build_for_dataset(
    spec: ClusterSpec,
    dataset: ImageDataset,
    rows: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> ClusterAssignment | None:
    """:func:`build` on the given table rows of a dataset (default: all), with its auxiliary information
    and class names; one id per row of ``rows``, in that order."""
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows)
    table = dataset.table.iloc[rows].reset_index(drop=True)
    names = np.array([*dataset.class_names, None], dtype=object)  # label -1 (unlabelled) -> None
    classes = names[table["label"].to_numpy()]
    return build(
        spec, table, dataset.aux, classes=classes, features=features, name=f"dataset {dataset.name!r}"
    )


def tag_vectors(
    spec: ClusterSpec, table: pd.DataFrame, aux: AuxInfo | None = None, name: str = "the data"
) -> TagMatrix:
    """The 0/1 image x tag matrix of the tag and attribute columns ``spec`` names (or the data's own): the
    binary attributes the attribute clusters of the same settings combine, all of them, sparse.

    Args:
        spec: ``tags``, ``attributes``, ``top_tags``, ``min_tag_count``, ``tag_separator``, ``bins``.
        table: ``[N]`` rows with those columns.
        aux: the data's own auxiliary columns, used when ``spec`` names none.
        name: what the data is called in messages.
    """
    columns, tags = _attribute_columns(spec, aux, name)
    return _binary_attributes(spec, table, columns, tags).tag_matrix()


def tag_vectors_for_dataset(spec: ClusterSpec, dataset: ImageDataset, rows: np.ndarray) -> TagMatrix:
    """:func:`tag_vectors` of the given table rows of a dataset, in that order."""
    table = dataset.table.iloc[np.asarray(rows)].reset_index(drop=True)
    return tag_vectors(spec, table, dataset.aux, f"dataset {dataset.name!r}")


def read_parents(path: str | os.PathLike) -> dict[str, list[str]]:
    """A ``child,parent`` edge table as a parents map (several rows per child for several parents)."""
    edges = read_table(path)
    require_columns(edges, ["child", "parent"], path)
    parents: dict[str, list[str]] = {}
    for child, parent in zip(edges["child"].astype(str), edges["parent"], strict=True):
        parents.setdefault(child, [])
        if not pd.isna(parent):
            parents[child].append(str(parent))
    return parents


def clusters_from_file(path: str | os.PathLike, table: pd.DataFrame) -> ClusterAssignment:
    """Clusters from a CSV written by ``clinfonce clusters``: matched on ``path`` when both the file and
    ``table`` have that column, else by order (then the file must have one row per row of ``table``)."""
    frame = read_table(path)
    require_columns(frame, ["cluster"], path)
    provenance = {**ClusterAssignment.load_metadata(path).get("provenance", {}), "file": str(path)}
    if "path" in frame.columns and "path" in table.columns:
        by_path = dict(zip(frame["path"].astype(str), frame["cluster"], strict=True))
        missing = [p for p in table["path"].astype(str) if p not in by_path]
        if missing:
            raise InputError(f"{path}: no cluster for {len(missing)} image(s), e.g. {missing[0]!r}")
        tokens = np.array([by_path[p] for p in table["path"].astype(str)])
        return ClusterAssignment.from_tokens(tokens, provenance)
    if len(frame) != len(table):
        raise InputError(f"{path}: {len(frame)} rows, but the data to cluster has {len(table)}")
    return ClusterAssignment.from_tokens(frame["cluster"].to_numpy(), provenance)


def attribute_targets(
    spec: ClusterSpec, dataset: ImageDataset, rows: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The binary attributes that the attribute clusters of ``spec`` combine (the top ``spec.top_k`` of the
    ranking), as targets for the attribute baselines.

    Returns:
        ``int8 [len(rows), top_k]`` with +1 (attribute present), -1 (absent), 0 (missing), and the names of
        the attributes in rank order (those the clusters' provenance lists).
    """
    table = dataset.table.iloc[np.asarray(rows)].reset_index(drop=True)
    name = f"dataset {dataset.name!r}"
    columns, tags = _attribute_columns(spec, dataset.aux, name)
    with _top_k_named(spec, columns, tags, name):
        attributes = _binary_attributes(spec, table, columns, tags)
        ranking = rank_attributes(attributes)
        if spec.top_k > len(ranking.names):
            raise TopKError("top_k too large", len(ranking.names))
    top = ranking.order[: spec.top_k]
    return attributes.signed(top), ranking.names[: spec.top_k]


def _attribute_columns(spec: ClusterSpec, aux: AuxInfo | None, name: str) -> tuple[list[str], list[str]]:
    """The attribute and tag columns ``spec`` names, or the data's own when it names none."""
    if spec.attributes is None and spec.tags is None:
        columns, tags = (list(aux.attributes), list(aux.tags)) if aux is not None else ([], [])
        if not columns and not tags:
            raise InputError(f"{name} has no auxiliary attributes of its own; name attribute or tag columns")
        return columns, tags
    return list(spec.attributes or []), list(spec.tags or [])


def _binary_attributes(
    spec: ClusterSpec, table: pd.DataFrame, columns: list[str], tags: list[str]
) -> BinaryAttributes:
    """The binary attributes of ``table``'s attribute ``columns`` and tag columns ``tags`` under the binning
    and tag settings of ``spec``: what attribute clusters, attribute targets and tag vectors all start from."""
    return binarize(
        table,
        columns,
        tags=tags,
        bins=spec.bins or None,
        top_tags=spec.top_tags,
        tag_separator=spec.tag_separator,
        min_tag_count=spec.min_tag_count,
    )


@contextlib.contextmanager
def _top_k_named(spec: ClusterSpec, columns: list[str], tags: list[str], name: str) -> Iterator[None]:
    """Re-raise a :class:`TopKError` naming the setting as the user wrote it, not the library's parameter."""
    try:
        yield
    except TopKError as error:
        raise InputError(
            f"top_k (--top-k, clusters.top_k) is {spec.top_k}, but the columns {[*columns, *tags]} of {name} "
            f"give {error.n_attributes} binary attribute(s): choose 1..{error.n_attributes}"
        ) from None


def _attributes(spec: ClusterSpec, table: pd.DataFrame, aux: AuxInfo | None, name: str) -> ClusterAssignment:
    columns, tags = _attribute_columns(spec, aux, name)
    with _top_k_named(spec, columns, tags, name):
        return attribute_clusters(_binary_attributes(spec, table, columns, tags), k=spec.top_k)


def _hierarchy(
    spec: ClusterSpec, classes: Sequence[Any] | np.ndarray, aux: AuxInfo | None, name: str
) -> ClusterAssignment:
    labels = np.asarray(classes, dtype=object)
    hierarchy: str | Parents | None = spec.hierarchy or (aux.hierarchy if aux is not None else None)
    if hierarchy is None:
        raise InputError(
            f"{name} has no class hierarchy of its own; give one (wordnet or a child,parent CSV)"
        )
    names = None
    if hierarchy == "wordnet":
        present = sorted({str(label) for label in labels if not pd.isna(label)})
        wordnet = WordNet(spec.wordnet_dir)
        parents: Parents = wordnet.parent_map(present)
        names = wordnet.name  # keys read "n02084071 (dog)"
    elif isinstance(hierarchy, str):
        parents = read_parents(Path(hierarchy))
    else:
        parents = hierarchy
    return hierarchy_clusters(labels, parents, spec.level, path_rule=spec.path_rule, names=names)


def _kmeans(spec: ClusterSpec, table: pd.DataFrame, features: np.ndarray | None) -> ClusterAssignment:
    if features is None:
        if spec.features is None:
            raise InputError("K-means clusters need features: a .npy file of [N, D] features")
        try:
            features = np.load(spec.features, allow_pickle=False, mmap_mode="r")  # assigned in blocks
        except (ValueError, OSError) as error:
            raise InputError(f"{spec.features}: cannot read a .npy array: {one_line(error)}") from error
    if features.ndim != 2 or len(features) != len(table):
        where = spec.features or "features"
        raise InputError(
            f"{where}: expected [N, D] features with N = {len(table)} rows, got {features.shape}"
        )
    return kmeans_clusters(
        features,
        spec.k,
        seed=spec.seed,
        spherical=spec.spherical,
        nredo=spec.restarts,
        max_points_per_centroid=spec.points_per_centroid,
    )


def _require_classes(
    classes: Sequence[Any] | np.ndarray | None, table: pd.DataFrame, name: str, source: str
) -> Sequence[Any] | np.ndarray:
    if classes is None:
        raise InputError(f"{source} clusters need the class of each row of {name} (a label column)")
    if len(classes) != len(table):
        raise ValueError(f"{len(classes)} classes given for {len(table)} rows")
    return classes


__all__ = [
    "attribute_targets",
    "build",
    "build_for_dataset",
    "clusters_from_file",
    "read_parents",
    "tag_vectors",
    "tag_vectors_for_dataset",
]
