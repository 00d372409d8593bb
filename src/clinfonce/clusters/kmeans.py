"""Stage 1 without auxiliary information: K-means on the model's own features (the paper's Algorithm 1).

Two interchangeable backends compute the centroids:

* ``"faiss"``: :class:`faiss.Kmeans`, as the authors used (random initialisation, ``niter`` Lloyd
  iterations, ``nredo`` restarts keeping the best, training on a random subsample of at most
  ``k * max_points_per_centroid`` points).
* ``"torch"``: a pure-torch implementation (greedy k-means++ initialisation, Lloyd iterations with
  chunked distance computations so memory stays ``O(chunk * k)``, deterministic re-seeding of empty
  clusters, restarts keeping the lowest objective, the same subsampling rule as faiss). It runs on any
  torch device, so it also serves GPU users without faiss-gpu.

Whatever the backend, every one of the N points is then assigned to its nearest centroid (training may have
seen only a subsample), and the objective is recomputed here, in float64, over all N points, so both
backends report the same quantity.

With ``spherical=True`` the points are L2-normalised and the centroids are kept on the unit sphere
(cosine K-means, like faiss's ``spherical=True`` applied to unit vectors). A point whose norm is zero stays
the zero vector; its cosine to every centroid counts as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.errors import InputError

__all__ = ["KMeansResult", "fit_kmeans", "kmeans_clusters"]

_BACKENDS = ("auto", "faiss", "torch")

# Distance blocks hold at most this many float32 elements (rows per block = this // k, clamped to
# [_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS]), so memory stays O(chunk * k) however large N is.
_CHUNK_ELEMENTS = 1 << 24
_MIN_CHUNK_ROWS = 256
_MAX_CHUNK_ROWS = 65_536
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class KMeansResult:
    """Centroids and hard assignments of one K-means run.

    Attributes:
        centroids: ``np.float32 [K, D]``, K = the ``k`` requested. Unit-norm rows when spherical (except a
            centroid of only zero vectors).
        assignments: ``np.int64 [N]``; ``assignments[i]`` is the row of ``centroids`` nearest to point ``i``
            (largest cosine when spherical). Not renumbered: a centroid that ends up with no member simply
            does not occur.
        objective: the final inertia over all N points, computed in float64: the sum of squared Euclidean
            distances to the assigned centroids, or, when spherical, the sum of ``1 - cos(x_i, c_{a_i})``.
        backend: ``"faiss"`` or ``"torch"``, the backend actually used.
        n_train_points: how many points the centroids were trained on (``min(N, k * max_points_per_centroid)``).
    """

    centroids: np.ndarray
    assignments: np.ndarray
    objective: float
    backend: str
    n_train_points: int


def fit_kmeans(
    features: np.ndarray | torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    spherical: bool = False,
    n_iter: int = 20,
    n_restarts: int = 5,
    max_points_per_centroid: int = 256,
    backend: str = "auto",
    device: str | torch.device | None = None,
) -> KMeansResult:
    """Run K-means on ``features`` and assign every point to its nearest centroid.

    Args:
        features: ``[N, D]`` numpy array or torch tensor of real numbers (any float dtype; converted to
            float32). Every row must be finite.
        k: number of centroids, ``1 <= k <= N``.
        seed: random seed. The same seed, backend and input give the same result. The torch backend seeds
            restart ``r`` with ``seed + r`` and draws the training subsample with ``seed``.
        spherical: cosine K-means: L2-normalise the points and keep the centroids on the unit sphere.
        n_iter: Lloyd iterations per restart (the torch backend stops a restart early once the assignments
            no longer change).
        n_restarts: independent initialisations; the one with the lowest training objective is kept.
        max_points_per_centroid: when ``N > k * max_points_per_centroid`` the centroids are trained on a
            random subsample of ``k * max_points_per_centroid`` points (as faiss does); all N points are
            assigned afterwards regardless.
        backend: ``"faiss"``, ``"torch"`` or ``"auto"``. ``"auto"`` is faiss when it can be imported, else
            torch; but torch when ``device`` names a non-CPU device (faiss-cpu cannot use it).
        device: torch device for the torch backend. Defaults to the device of a torch ``features`` tensor,
            else the CPU. The faiss backend runs on the CPU only.

    Returns:
        A :class:`KMeansResult` with ``centroids [k, D]`` and ``assignments [N]``.

    Raises:
        ValueError: on a features array that is not 2-D, has no column or has non-finite rows, on ``k``
            outside ``1..N``, on non-positive ``n_iter`` / ``n_restarts`` / ``max_points_per_centroid``, on an
            unknown backend, or when ``backend="faiss"`` is asked for a non-CPU device.
        ImportError: when ``backend="faiss"`` and faiss is not installed.
    """
    if backend not in _BACKENDS:
        raise InputError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    for name, value in (
        ("n_iter", n_iter),
        ("n_restarts", n_restarts),
        ("max_points_per_centroid", max_points_per_centroid),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    seed, n_iter, n_restarts, max_points_per_centroid = (
        int(seed),
        int(n_iter),
        int(n_restarts),
        int(max_points_per_centroid),
    )

    if device is None:
        device = features.device if isinstance(features, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    used = _resolve_backend(backend, device)

    x = _validated_points(features, device if used == "torch" else torch.device("cpu"))
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InputError(f"k must be an integer with 1 <= k <= N = {n}, got {k!r}")
    k = int(k)
    if spherical:
        x = _normalise(x)
    n_train = min(n, k * max_points_per_centroid)

    if used == "faiss":
        centroids, labels = _fit_faiss(x, k, spherical, n_iter, n_restarts, seed, max_points_per_centroid)
    else:
        centroids, labels = _fit_torch(x, k, spherical, n_iter, n_restarts, seed, n_train)

    objective = _objective(x, centroids, labels, spherical)
    return KMeansResult(
        centroids=centroids.detach().cpu().numpy().astype(np.float32, copy=False),
        assignments=labels.detach().cpu().numpy().astype(np.int64, copy=False),
        objective=objective,
        backend=used,
        n_train_points=n_train,
    )


def kmeans_clusters(
    features: np.ndarray | torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    spherical: bool = False,
    n_iter: int = 20,
    n_restarts: int = 5,
    max_points_per_centroid: int = 256,
    backend: str = "auto",
    device: str | torch.device | None = None,
) -> ClusterAssignment:
    """Cluster ``features`` with K-means: the stage-1 clusters when there is no auxiliary information.

    Runs :func:`fit_kmeans` (see there for the arguments) and turns its assignments into contiguous cluster
    ids. Centroids that end up with no member after the final assignment of all N points vanish, so
    ``n_clusters`` may be smaller than ``k``; ids keep the order of the centroid indices, and ``keys[c]`` is
    the index (as a string) of cluster ``c``'s row in :attr:`KMeansResult.centroids`.

    Args:
        features: ``[N, D]`` numpy array or torch tensor, finite.
        k: number of centroids requested, ``1 <= k <= N``.
        seed, spherical, n_iter, n_restarts, max_points_per_centroid, backend, device: as in
            :func:`fit_kmeans`.

    Returns:
        A :class:`ClusterAssignment` with ids ``[N]`` and provenance: ``method`` ("kmeans"), ``backend``
        (actually used), ``k``, ``n_clusters``, ``spherical``, ``n_iter``, ``n_restarts``, ``seed``,
        ``max_points_per_centroid``, ``objective`` (float64 inertia over all N points; sum of ``1 - cos``
        when spherical), ``n_train_points`` and ``n_points``.
    """
    result = fit_kmeans(
        features,
        k,
        seed=seed,
        spherical=spherical,
        n_iter=n_iter,
        n_restarts=n_restarts,
        max_points_per_centroid=max_points_per_centroid,
        backend=backend,
        device=device,
    )
    provenance: dict[str, Any] = {
        "method": "kmeans",
        "backend": result.backend,
        "k": int(k),
        "n_clusters": int(np.unique(result.assignments).size),
        "spherical": bool(spherical),
        "n_iter": int(n_iter),
        "n_restarts": int(n_restarts),
        "seed": int(seed),
        "max_points_per_centroid": int(max_points_per_centroid),
        "objective": float(result.objective),
        "n_train_points": int(result.n_train_points),
        "n_points": int(result.assignments.size),
    }
    return ClusterAssignment.from_tokens(result.assignments, provenance)


# --------------------------------------------------------------------------------------------------------
# input handling


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "faiss":
        if device.type != "cpu":
            raise InputError(f"the faiss backend runs on the CPU; device={device} needs backend='torch'")
        return "faiss"
    if backend == "torch":
        return "torch"
    if device.type != "cpu":
        return "torch"
    return "faiss" if _faiss_available() else "torch"


def _validated_points(features: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[N, D]`` float32 tensor on ``device``, after checking shape, dtype and finiteness."""
    if isinstance(features, torch.Tensor):
        x = features.detach()
        if x.is_complex() or x.dtype == torch.bool:
            raise InputError(f"features must be real numbers, got dtype {x.dtype}")
    else:
        array = np.asarray(features)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"features must be real numbers, got dtype {array.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(array))
    if x.ndim != 2:
        raise InputError(f"features must be two-dimensional [N, D], got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise InputError("features must have at least one column")
    x = x.to(device=device, dtype=torch.float32).contiguous()
    bad_rows = int((~torch.isfinite(x)).any(dim=1).sum())
    if bad_rows:
        raise InputError(
            f"{bad_rows} of {x.shape[0]} feature rows contain non-finite values (NaN or inf, "
            "possibly after conversion to float32)"
        )
    return x


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm; zero rows stay zero."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(_NORM_EPS)


def _chunk_rows(k: int) -> int:
    return max(_MIN_CHUNK_ROWS, min(_MAX_CHUNK_ROWS, _CHUNK_ELEMENTS // max(k, 1)))


# --------------------------------------------------------------------------------------------------------
# faiss backend


def _fit_faiss(
    x: torch.Tensor,
    k: int,
    spherical: bool,
    n_iter: int,
    n_restarts: int,
    seed: int,
    max_points_per_centroid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids ``[k, D]`` trained by faiss and the assignment ``[N]`` of all points (a search of every
    point against the centroids, since faiss may have trained on a subsample)."""
    import faiss

    points = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
    kmeans = faiss.Kmeans(
        points.shape[1],
        k,
        niter=n_iter,
        nredo=n_restarts,
        spherical=spherical,
        seed=seed,
        max_points_per_centroid=max_points_per_centroid,
        # only silences faiss's "please provide at least k * 39 training points" warning on stderr
        min_points_per_centroid=1,
        verbose=False,
    )
    kmeans.train(points)
    centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
    # Kmeans.index is IndexFlatL2, or IndexFlatIP when spherical (nearest = largest cosine on unit vectors).
    kmeans.index.reset()
    kmeans.index.add(centroids)
    _, nearest = kmeans.index.search(points, 1)
    labels = nearest[:, 0].astype(np.int64)
    if labels.min() < 0:  # faiss reports -1 when it finds nothing; cannot happen with k >= 1 flat centroids
        raise RuntimeError("faiss search returned no centroid for some points")
    return torch.from_numpy(centroids.copy()), torch.from_numpy(labels)


# --------------------------------------------------------------------------------------------------------
# torch backend


def _fit_torch(
    x: torch.Tensor,
    k: int,
    spherical: bool,
    n_iter: int,
    n_restarts: int,
    seed: int,
    n_train: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids ``[k, D]`` (best of ``n_restarts``) trained on ``n_train`` points of ``x [N, D]`` and the
    assignment ``[N]`` of all points."""
    n = x.shape[0]
    if n_train < n:
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(n, generator=generator)[:n_train].sort().values
        x_train = x[rows.to(x.device)]
    else:
        x_train = x

    best_centroids: torch.Tensor | None = None
    best_objective = math.inf
    for restart in range(n_restarts):
        generator = torch.Generator().manual_seed(seed + restart)
        centroids = _kmeans_plus_plus(x_train, k, generator)
        if spherical:
            centroids = _normalise(centroids)
        centroids, _, min_dist = _lloyd(x_train, centroids, n_iter, spherical)
        objective = float(min_dist.double().sum())
        if best_centroids is None or objective < best_objective:
            best_centroids, best_objective = centroids, objective
    assert best_centroids is not None
    labels, _ = _assign(x, best_centroids, spherical)
    return best_centroids, labels


def _kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (as in scikit-learn): ``[k, D]`` rows of ``x [n, D]``.

    Each new centre is the best (lowest resulting potential) of ``2 + log k`` candidates drawn with
    probability proportional to the squared distance to the nearest centre chosen so far. Randomness comes
    from the CPU ``generator`` only, so the choice is reproducible on any device. Memory is ``O(n)``.
    """
    n = x.shape[0]
    n_trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(dim=1)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = _sq_dist_to(x, x_sq, x[first : first + 1])[:, 0]
    for _ in range(1, k):
        cdf = torch.cumsum(closest, dim=0, dtype=torch.float64)
        total = float(cdf[-1])
        if total > 0:
            draws = torch.rand(n_trials, generator=generator, dtype=torch.float64) * total
            candidates = torch.searchsorted(cdf, draws.to(x.device), right=True).clamp_max(n - 1)
        else:  # every point coincides with a centre: any choice is as good
            candidates = torch.randint(n, (n_trials,), generator=generator).to(x.device)
        candidate_dist = torch.minimum(closest[:, None], _sq_dist_to(x, x_sq, x[candidates]))
        best = int(torch.argmin(candidate_dist.sum(dim=0, dtype=torch.float64)))
        closest = candidate_dist[:, best]
        chosen.append(int(candidates[best]))
    return x[torch.tensor(chosen, device=x.device)].clone()


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` squared Euclidean distances of ``x [n, D]`` to a few ``centres [m, D]``, clamped at 0."""
    c_sq = (centres * centres).sum(dim=1)
    dist = torch.addmm(c_sq[None, :], x, centres.T, alpha=-2.0)
    return dist.add_(x_sq[:, None]).clamp_min_(0.0)


def _assign(x: torch.Tensor, centroids: torch.Tensor, spherical: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row of ``x [n, D]``, in blocks of rows.

    Returns:
        ``labels`` int64 ``[n]`` and ``min_dist`` float32 ``[n]``: the squared distance to that centroid, or
        ``1 - x·c`` when spherical (``x`` and the centroids unit vectors). Ties go to the lowest index.
    """
    n, k = x.shape[0], centroids.shape[0]
    rows = _chunk_rows(k)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    min_dist = torch.empty(n, dtype=torch.float32, device=x.device)
    centroids_t = centroids.T.contiguous()
    c_sq = (centroids * centroids).sum(dim=1)[None, :]
    for start in range(0, n, rows):
        block = x[start : start + rows]
        if spherical:
            similarity = block @ centroids_t
            best, index = similarity.max(dim=1)
            dist = (1.0 - best).clamp_min_(0.0)
        else:
            # ||x||^2 is the same for every centroid: leave it out of the argmin, add it back afterwards
            partial = torch.addmm(c_sq, block, centroids_t, alpha=-2.0)
            best, index = partial.min(dim=1)
            dist = (best + (block * block).sum(dim=1)).clamp_min_(0.0)
        labels[start : start + rows] = index
        min_dist[start : start + rows] = dist
    return labels, min_dist


def _update(
    x: torch.Tensor,
    labels: torch.Tensor,
    min_dist: torch.Tensor,
    centroids: torch.Tensor,
    spherical: bool,
) -> torch.Tensor:
    """New centroids ``[k, D]``: the mean of each cluster's members (normalised when spherical).

    An empty cluster is re-seeded with a point far from the centroid it was assigned to: the empty clusters, in index
    order, take the points of largest ``min_dist``, in decreasing order (ties: lowest row first).
    """
    k = centroids.shape[0]
    counts = torch.bincount(labels, minlength=k)
    sums = _cluster_sums(x, labels, k, by_matmul=x.device.type != "cpu")
    new = _normalise(sums) if spherical else sums / counts.clamp_min(1)[:, None].to(sums.dtype)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        far = torch.argsort(min_dist, descending=True, stable=True)[: empty.numel()]
        new[empty] = x[far]
    return new


def _cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int, by_matmul: bool) -> torch.Tensor:
    """``[k, D]`` float32 sums of the rows of ``x [n, D]`` per label.

    ``index_add_`` is used on the CPU. On accelerators it relies on floating-point atomics (results differ
    from run to run), so there (``by_matmul``) a one-hot matmul per block of rows is used instead: the same
    sums, deterministic, with memory O(chunk * k).
    """
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device)
    if not by_matmul:
        return sums.index_add_(0, labels, x)
    rows = _chunk_rows(k)
    for start in range(0, x.shape[0], rows):
        block_labels = labels[start : start + rows]
        one_hot = torch.zeros(block_labels.shape[0], k, dtype=torch.float32, device=x.device)
        one_hot.scatter_(1, block_labels[:, None], 1.0)
        sums.addmm_(one_hot.T, x[start : start + rows])
    return sums


def _lloyd(
    x: torch.Tensor,
    centroids: torch.Tensor,
    n_iter: int,
    spherical: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At most ``n_iter`` Lloyd iterations from ``centroids [k, D]`` on ``x [n, D]``.

    Stops early when an update leaves every assignment unchanged (a fixed point).

    Returns:
        ``centroids [k, D]``, ``labels [n]`` and ``min_dist [n]`` (as :func:`_assign`), all for the final
        centroids.
    """
    labels, min_dist = _assign(x, centroids, spherical)
    for _ in range(n_iter):
        centroids = _update(x, labels, min_dist, centroids, spherical)
        new_labels, min_dist = _assign(x, centroids, spherical)
        converged = torch.equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centroids, labels, min_dist


# --------------------------------------------------------------------------------------------------------
# objective


def _objective(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, spherical: bool) -> float:
    """Float64 inertia of all points ``x [N, D]`` w.r.t. their assigned ``centroids [k, D]``: the sum of
    squared distances, or the sum of ``1 - cos`` when spherical (cosine 0 for a zero vector)."""
    centroids = centroids.to(x.device)
    labels = labels.to(x.device)
    rows = _chunk_rows(1)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows].double()
        assigned = centroids[labels[start : start + rows]].double()
        if spherical:
            norms = block.norm(dim=1) * assigned.norm(dim=1)
            dots = (block * assigned).sum(dim=1)
            cosine = torch.where(norms > 0, dots / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
            total += (1.0 - cosine).sum()
        else:
            total += ((block - assigned) ** 2).sum()
    return float(total)
