"""K-means over tags: k balanced clusters of a long-tail vocabulary instead of 2^k tag combinations.

The top-k combination of binary tags (:func:`~clinfonce.clusters.attributes.attribute_clusters`) suits a
few dozen tags; with 10^4-10^5 tags and a handful per image almost every image is alone in its combination
or all share "none of the top k". Here every image is its tag vector (binary or tf-idf,
:meth:`TagMatrix.weighted`), L2-normalised, reduced to at most ``dims`` dimensions by a seeded truncated
SVD, and clustered by spherical K-means (:func:`fit_kmeans`, faiss). ``benchmarks/bench_tags.py`` chose
the SVD over a sparse random projection: on 100,000 images of 100 planted topics the projection's
clusters held 2.0 bits about the topic, the SVD's 3.4 (of 6.6), for 6x the reduction time.

The key of a cluster names its most characteristic tags: those whose share among the cluster's images
most exceeds their share among all tagged images, scored by ``f * ln(f / p)`` (f: share in the cluster,
p: overall), so a tag frequent everywhere does not name a cluster. Images without a tag, or with a
missing tag cell, are singletons (counted in the provenance), as rows with missing attributes are.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.kmeans import fit_kmeans
from clinfonce.clusters.tags import TagMatrix
from clinfonce.errors import InputError


def reduce_tag_vectors(vectors: sp.csr_array, dims: int, seed: int = 0) -> np.ndarray:
    """``float32 [N, min(dims, T)]``: the L2-normalised rows of ``vectors`` ``[N, T]`` reduced to at most
    ``dims`` dimensions by scikit-learn's randomized truncated SVD (the directions of most variance), then
    L2-normalised again (zero rows stay zero). With ``T <= dims`` the vectors are used as they are."""
    unit = _normalise_rows(sp.csr_array(vectors, dtype=np.float32))
    if unit.shape[1] <= dims:
        reduced = unit.toarray()
    else:
        from sklearn.decomposition import TruncatedSVD

        reduced = TruncatedSVD(n_components=dims, algorithm="randomized", random_state=seed).fit_transform(
            unit
        )
    reduced = np.asarray(reduced, dtype=np.float32)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return reduced / np.where(norms > 0, norms, 1)


def tag_kmeans_clusters(
    tags: TagMatrix,
    k: int,
    *,
    dims: int = 256,
    weighting: str = "tfidf",
    seed: int = 0,
    nredo: int = 5,
    max_points_per_centroid: int = 256,
    key_tags: int = 3,
) -> ClusterAssignment:
    """Spherical K-means of the tagged images' reduced tag vectors (see the module docstring).

    Args:
        tags: the tag matrix of N images.
        k: clusters of tagged images, at most their number.
        dims: dimensions after the reduction.
        weighting: ``binary`` or ``tfidf``.
        seed: seeds the reduction and K-means.
        nredo: K-means restarts (the lowest objective is kept).
        max_points_per_centroid: K-means trains on at most ``k`` x this many images.
        key_tags: characteristic tags named in each cluster's key.

    Returns:
        Ids ``[N]``: the K-means clusters numbered by centroid (empty ones vanish), then one singleton per
        image without tags, in row order. ``keys[c]`` lists cluster c's characteristic tags joined by
        ``" | "``; the provenance records the settings, the counts and the reduction's time.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    if dims < 1:
        raise InputError(f"tag_dims must be >= 1, got {dims}")
    vectors = tags.weighted(weighting)
    missing = tags.any_missing()
    untagged = (np.diff(vectors.indptr) == 0) & ~missing
    alone = missing | untagged
    tagged = np.flatnonzero(~alone)
    if k > len(tagged):
        raise InputError(f"k = {k} tag clusters, but only {len(tagged)} image(s) have tags")
    started = time.perf_counter()
    reduced = reduce_tag_vectors(vectors[tagged], dims, seed)
    reduction_seconds = time.perf_counter() - started
    result = fit_kmeans(
        reduced, k, seed=seed, spherical=True, nredo=nredo, max_points_per_centroid=max_points_per_centroid
    )
    centroids, inverse = np.unique(result.assignments, return_inverse=True)
    binary = tags.matrix[tagged]
    keys = _characteristic_tags(binary, inverse.reshape(-1), len(centroids), tags.names, key_tags)
    provenance: dict[str, Any] = {
        "method": "tag_kmeans",
        "k": int(k),
        "n_tag_clusters": len(centroids),
        "weighting": weighting,
        "reduction": "truncated SVD (scikit-learn, randomized)",
        "dims": int(reduced.shape[1]),
        "seed": int(seed),
        "nredo": int(nredo),
        "inertia": float(result.inertia),
        "n_tags": len(tags.names),
        "tag_columns": sorted(set(tags.sources)),
        "n_untagged_rows": int(untagged.sum()),
        "n_missing_rows": int(missing.sum()),
        "missing_policy": "an image without tags or with a missing tag cell is its own singleton cluster",
        "reduction_seconds": round(reduction_seconds, 3),
    }
    return ClusterAssignment.from_inverse(inverse.reshape(-1), keys, provenance, singleton_rows=alone)


def _normalise_rows(matrix: sp.csr_array) -> sp.csr_array:
    norms = np.sqrt(np.asarray((matrix.multiply(matrix)).sum(axis=1))).reshape(-1)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_array(sp.diags_array(scale.astype(np.float32)) @ matrix)


def _characteristic_tags(
    binary: sp.csr_array, ids: np.ndarray, n_clusters: int, names: tuple[str, ...], count: int
) -> list[str]:
    """``[n_clusters]`` keys: per cluster the ``count`` tags scored highest by ``f ln(f / p)`` among those
    over-represented in it (``binary``: ``[N, T]`` 0/1 of the clustered images, ``ids``: ``[N]``)."""
    n = binary.shape[0]
    membership = sp.csr_array((np.ones(n, dtype=np.float32), (ids, np.arange(n))), shape=(n_clusters, n))
    in_cluster = sp.csr_array(membership @ binary)  # [K, T] images of each cluster holding each tag
    sizes = np.bincount(ids, minlength=n_clusters).astype(np.float64)
    overall = np.asarray(binary.sum(axis=0)).reshape(-1) / n  # [T]
    keys = []
    for c in range(n_clusters):
        start, stop = in_cluster.indptr[c], in_cluster.indptr[c + 1]
        tag_index = in_cluster.indices[start:stop]
        share = in_cluster.data[start:stop] / sizes[c]
        score = share * np.log(share / overall[tag_index])
        order = np.lexsort((tag_index, -score))
        chosen = [names[tag_index[i]] for i in order[:count] if score[i] > 0]
        keys.append(" | ".join(chosen) if chosen else f"tag cluster {c}")
    seen: dict[str, int] = {}
    for c, key in enumerate(keys):  # two clusters with the same leading tags: number the later ones
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            keys[c] = f"{key} ({seen[key]})"
    return keys


__all__ = ["reduce_tag_vectors", "tag_kmeans_clusters"]
