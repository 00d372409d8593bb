"""Stage 1 without auxiliary information: K-means on the model's own features (the paper's Algorithm 1).

The centroids are trained by :class:`faiss.Kmeans`, as the authors did (random initialisation, ``niter``
Lloyd iterations, ``nredo`` restarts keeping the lowest objective, empty clusters re-seeded by faiss's
splitting). Memory stays bounded for large N: training sees a random subsample of at most
``k * max_points_per_centroid`` rows (drawn here, with ``seed``, so only those rows are ever copied), and all
N rows are then validated and assigned in blocks of ``batch_size`` rows by a search of the trained
``Kmeans.index``, so ``features`` may be a memory-mapped ``.npy`` array.

With ``spherical=True`` the points are L2-normalised before training and search, and faiss keeps the
centroids on the unit sphere (cosine K-means). A zero row stays zero; its cosine to every centroid is 0.

During multi-process training, rank 0 alone runs it on the gathered features
(:func:`clinfonce.training.recluster.kmeans_across_ranks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.errors import InputError

__all__ = ["KMeansResult", "fit_kmeans", "kmeans_clusters"]

_INT_MAX = 2**31 - 1  # faiss stores seed and max_points_per_centroid in C ints


@dataclass(frozen=True)
class KMeansResult:
    """Centroids and hard assignments of one K-means run.

    Attributes:
        centroids: ``np.float32 [k, D]`` as trained by faiss (unit-norm rows when spherical).
        assignments: ``np.int64 [N]``; ``assignments[i]`` is the row of ``centroids`` nearest to point ``i``
            (largest cosine when spherical). Not renumbered: a centroid with no member does not occur.
        inertia: float64 objective over all N points: the sum of squared Euclidean distances to the assigned
            centroids, or, when spherical, the sum of ``1 - cos(x_i, c_{a_i})``.
        n_train_points: rows the centroids were trained on, ``min(N, k * max_points_per_centroid)``.
    """

    centroids: np.ndarray
    assignments: np.ndarray
    inertia: float
    n_train_points: int


def fit_kmeans(
    features: Any,
    k: int,
    *,
    seed: int = 0,
    spherical: bool = False,
    niter: int = 20,
    nredo: int = 5,
    max_points_per_centroid: int = 256,
    batch_size: int = 32_768,
) -> KMeansResult:
    """Train :class:`faiss.Kmeans` on ``features`` and assign every point to its nearest centroid.

    Args:
        features: ``[N, D]`` real numbers: a numpy array (a memory-mapped one is read block by block) or a
            torch tensor (copied to the CPU). Converted to float32; every row must be finite after that.
        k: number of centroids, ``1 <= k <= N``.
        seed: ``0 <= seed < 2**31``; picks the training subsample and seeds faiss. The same seed, input and
            arguments give the same result.
        spherical: cosine K-means (see the module docstring).
        niter: Lloyd iterations per restart.
        nredo: restarts; faiss keeps the one with the lowest training objective.
        max_points_per_centroid: when ``N > k * max_points_per_centroid``, the centroids are trained on a
            uniform random subsample (without replacement) of ``k * max_points_per_centroid`` rows.
        batch_size: rows converted, validated and searched at a time; bounds the extra memory to about
            ``batch_size * D`` floats. The result does not depend on it.

    Raises:
        InputError: (a ``ValueError``) on features that are not a 2-D real array with at least one column,
            non-finite rows, ``k`` outside ``1..N``, or invalid ``seed`` / ``niter`` / ``nredo`` /
            ``max_points_per_centroid`` / ``batch_size``.
    """
    if not _is_int(seed) or not 0 <= seed <= _INT_MAX:
        raise InputError(f"seed must be an integer in 0..{_INT_MAX}, got {seed!r}")
    for name, value in (
        ("niter", niter),
        ("nredo", nredo),
        ("max_points_per_centroid", max_points_per_centroid),
        ("batch_size", batch_size),
    ):
        if not _is_int(value) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    x = _as_array(features)
    n = x.shape[0]
    if not _is_int(k) or not 1 <= k <= n:
        raise InputError(f"k must be an integer with 1 <= k <= N = {n}, got {k!r}")
    k, batch_size = int(k), int(batch_size)
    bad_rows = sum(
        int((~np.isfinite(_block(x, start, batch_size, False))).any(axis=1).sum())
        for start in range(0, n, batch_size)
    )
    if bad_rows:
        raise InputError(
            f"{bad_rows} of {n} feature rows contain non-finite values (NaN or inf, "
            "possibly after conversion to float32)"
        )

    n_train = min(n, k * int(max_points_per_centroid))
    if n_train < n:
        rows = np.sort(np.random.default_rng(int(seed)).choice(n, size=n_train, replace=False))
        train = _block(x[rows], 0, n_train, spherical)
    else:
        train = _block(x, 0, n, spherical)
    kmeans = faiss.Kmeans(
        x.shape[1],
        k,
        niter=int(niter),
        nredo=int(nredo),
        seed=int(seed),
        spherical=bool(spherical),
        max_points_per_centroid=min(int(max_points_per_centroid), _INT_MAX),  # >= n_train / k: no resampling
        min_points_per_centroid=1,  # only silences faiss's "please provide at least k * 39 points" warning
        verbose=False,
    )
    kmeans.train(train)
    del train
    centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
    if kmeans.index.ntotal != k:  # faiss leaves the final centroids in the index; make sure of it
        kmeans.index.reset()
        kmeans.index.add(centroids)

    reference = _normalise(centroids.astype(np.float64)) if spherical else centroids.astype(np.float64)
    assignments = np.empty(n, dtype=np.int64)
    inertia = 0.0
    for start in range(0, n, batch_size):
        _, nearest = kmeans.index.search(_block(x, start, batch_size, spherical), 1)
        labels = assignments[start : start + batch_size] = nearest[:, 0]
        points = np.asarray(x[start : start + batch_size], dtype=np.float64)
        assigned = reference[labels]
        if spherical:
            inertia += float((1.0 - np.einsum("ij,ij->i", _normalise(points), assigned)).sum())
        else:
            inertia += float(((points - assigned) ** 2).sum())
    return KMeansResult(centroids=centroids, assignments=assignments, inertia=inertia, n_train_points=n_train)


def kmeans_clusters(
    features: Any,
    k: int,
    *,
    seed: int = 0,
    spherical: bool = False,
    niter: int = 20,
    nredo: int = 5,
    max_points_per_centroid: int = 256,
    batch_size: int = 32_768,
) -> ClusterAssignment:
    """Cluster ``features`` with K-means: the stage-1 clusters when there is no auxiliary information.

    Runs :func:`fit_kmeans` (same arguments) and renumbers its assignments to contiguous ids in the order of
    the centroid indices. Centroids left with no member vanish, so ``n_clusters`` may be smaller than ``k``;
    ``keys[c]`` is the index (as a string) of cluster ``c``'s row in :attr:`KMeansResult.centroids`.

    Returns:
        A :class:`ClusterAssignment` with ids ``[N]`` and provenance: ``method`` ("kmeans"),
        ``implementation`` ("faiss.Kmeans"), ``faiss_version``, ``k``, ``n_clusters``, ``spherical``,
        ``niter``, ``nredo``, ``seed``, ``max_points_per_centroid``, ``inertia`` (see
        :class:`KMeansResult`), ``n_train_points`` and ``n_points``.
    """
    result = fit_kmeans(
        features,
        k,
        seed=seed,
        spherical=spherical,
        niter=niter,
        nredo=nredo,
        max_points_per_centroid=max_points_per_centroid,
        batch_size=batch_size,
    )
    provenance: dict[str, Any] = {
        "method": "kmeans",
        "implementation": "faiss.Kmeans",
        "faiss_version": str(getattr(faiss, "__version__", "unknown")),
        "k": int(k),
        "n_clusters": int(np.unique(result.assignments).size),
        "spherical": bool(spherical),
        "niter": int(niter),
        "nredo": int(nredo),
        "seed": int(seed),
        "max_points_per_centroid": int(max_points_per_centroid),
        "inertia": float(result.inertia),
        "n_train_points": int(result.n_train_points),
        "n_points": int(result.assignments.size),
    }
    return ClusterAssignment.from_tokens(result.assignments, provenance)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_array(features: Any) -> np.ndarray:
    """``features`` as a 2-D real numpy array (not copied when it already is one, e.g. a memmap)."""
    if hasattr(features, "detach") and hasattr(features, "cpu"):  # a torch tensor, on any device
        tensor = features.detach().cpu()
        try:
            features = tensor.numpy()
        except TypeError:  # bfloat16 has no numpy dtype
            features = tensor.float().numpy()
    x = np.asarray(features)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"features must be real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise InputError(f"features must be two-dimensional [N, D], got shape {x.shape}")
    if x.shape[1] < 1:
        raise InputError("features must have at least one column")
    return x


def _block(x: np.ndarray, start: int, size: int, spherical: bool) -> np.ndarray:
    """Rows ``start : start + size`` of ``x`` as contiguous float32, L2-normalised when ``spherical``."""
    with np.errstate(over="ignore"):  # an overflow to inf is reported by the finiteness check
        block = np.ascontiguousarray(x[start : start + size], dtype=np.float32)
    return _normalise(block) if spherical else block


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1).astype(x.dtype)
