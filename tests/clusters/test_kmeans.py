"""K-means stage 1: both backends against independent references (numpy brute force, scikit-learn)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from clinfonce.clusters import kmeans as kmeans_module
from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.kmeans import KMeansResult, fit_kmeans, kmeans_clusters


@pytest.fixture(params=["torch", "faiss"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn; the faiss one is skipped when faiss is not installed."""
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


def _blobs(seed: int = 0, n_blobs: int = 5, dim: int = 8, per_blob: int = 120, spread: float = 1.0):
    """Well-separated Gaussian blobs (centres 20 apart on the axes), shuffled; returns points and labels."""
    rng = np.random.default_rng(seed)
    centres = 20.0 * np.eye(dim)[:n_blobs]
    labels = np.repeat(np.arange(n_blobs), per_blob)
    points = centres[labels] + spread * rng.normal(size=(labels.size, dim))
    order = rng.permutation(labels.size)
    return points[order], labels[order]


def _overlapping(seed: int, n: int = 2000, dim: int = 10, n_centres: int = 15):
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.normal(size=(n_centres, dim))
    return centres[rng.integers(n_centres, size=n)] + rng.normal(size=(n, dim))


def _rays(seed: int = 0, n_dirs: int = 3, dim: int = 5, per_dir: int = 100):
    """Points along ``n_dirs`` orthogonal directions (small angular noise), norms log-uniform in [0.1, 100]."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :n_dirs].T  # orthonormal rows
    labels = np.repeat(np.arange(n_dirs), per_dir)
    directions = basis[labels] + 0.05 * rng.normal(size=(labels.size, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = 10.0 ** rng.uniform(-1, 2, size=labels.size)
    return directions * norms[:, None], labels


def _inertia(points: np.ndarray, centroids: np.ndarray, assignments: np.ndarray) -> float:
    diff = points.astype(np.float64) - centroids.astype(np.float64)[assignments]
    return float((diff**2).sum())


def _cosine(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    p = points.astype(np.float64)
    c = centroids.astype(np.float64)
    return (p / np.linalg.norm(p, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T


# ------------------------------------------------------------------------------------------------------------
# recovery of known structure


def test_recovers_well_separated_blobs(backend: str) -> None:
    points, labels = _blobs()
    result = kmeans_clusters(points, 5, backend=backend, seed=0)
    assert isinstance(result, ClusterAssignment)
    assert result.n == 600
    assert result.n_clusters == 5
    assert adjusted_rand_score(labels, result.ids) == 1.0
    prov = result.provenance
    assert prov["method"] == "kmeans"
    assert prov["backend"] == backend
    assert prov["k"] == 5 and prov["n_clusters"] == 5
    assert prov["n_train_points"] == 600 and prov["seed"] == 0 and prov["spherical"] is False
    assert prov["n_iter"] == 20 and prov["n_restarts"] == 5 and prov["max_points_per_centroid"] == 256


def test_fit_result_shapes_and_objective_are_consistent(backend: str) -> None:
    points, _ = _blobs(seed=1)
    result = fit_kmeans(points, 5, backend=backend, seed=3)
    assert isinstance(result, KMeansResult)
    assert result.backend == backend
    assert result.centroids.shape == (5, 8) and result.centroids.dtype == np.float32
    assert result.assignments.shape == (600,) and result.assignments.dtype == np.int64
    # the reported objective is the plain inertia over all points, computed independently here
    assert result.objective == pytest.approx(_inertia(points, result.centroids, result.assignments), rel=1e-6)
    # and every point sits with its nearest centroid
    dist = ((points[:, None, :] - result.centroids[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(result.assignments, dist.argmin(1))


def test_torch_objective_matches_sklearn_on_overlapping_data() -> None:
    for seed in range(3):
        points = _overlapping(seed)
        reference = KMeans(n_clusters=12, n_init=5, random_state=seed).fit(points).inertia_
        result = fit_kmeans(points, 12, backend="torch", seed=seed)
        assert result.objective == pytest.approx(
            _inertia(points, result.centroids, result.assignments), rel=1e-6
        )
        ratio = result.objective / reference
        assert 0.95 <= ratio <= 1.05, f"seed {seed}: torch inertia / sklearn inertia = {ratio:.4f}"


def test_faiss_objective_matches_sklearn_on_overlapping_data() -> None:
    pytest.importorskip("faiss")
    points = _overlapping(0)
    reference = KMeans(n_clusters=12, n_init=5, random_state=0).fit(points).inertia_
    result = fit_kmeans(points, 12, backend="faiss", seed=0)
    assert result.objective == pytest.approx(_inertia(points, result.centroids, result.assignments), rel=1e-6)
    assert 0.95 <= result.objective / reference <= 1.05


# ------------------------------------------------------------------------------------------------------------
# spherical


def test_spherical_clusters_by_direction_not_norm(backend: str) -> None:
    points, labels = _rays()
    result = fit_kmeans(points, 3, spherical=True, backend=backend, seed=0)
    assert adjusted_rand_score(labels, result.assignments) == 1.0
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    cosine = _cosine(points, result.centroids)
    np.testing.assert_array_equal(result.assignments, cosine.argmax(1))
    expected = float((1.0 - cosine[np.arange(len(points)), result.assignments]).sum())
    assert result.objective == pytest.approx(expected, rel=1e-6)
    clusters = kmeans_clusters(points, 3, spherical=True, backend=backend, seed=0)
    assert clusters.provenance["spherical"] is True
    assert clusters.provenance["objective"] == pytest.approx(expected, rel=1e-6)


def test_euclidean_kmeans_does_not_recover_rays() -> None:
    # sanity check of the spherical test: the norms dominate plain K-means on this data
    points, labels = _rays()
    result = fit_kmeans(points, 3, backend="torch", seed=0)
    assert adjusted_rand_score(labels, result.assignments) < 0.9


def test_spherical_tolerates_zero_rows() -> None:
    points, _ = _rays()
    points[:4] = 0.0
    result = fit_kmeans(points, 3, spherical=True, backend="torch", seed=0)
    assert result.assignments.shape == (len(points),)
    assert np.isfinite(result.objective)


# ------------------------------------------------------------------------------------------------------------
# subsampled training, chunking, empty clusters


@pytest.mark.parametrize("spherical", [False, True])
def test_subsampled_training_still_assigns_every_point_to_its_nearest_centroid(
    backend: str, spherical: bool
) -> None:
    points = _overlapping(7, n=3000, dim=6)
    k, per_centroid = 8, 10  # trains on 80 of the 3000 points
    result = fit_kmeans(
        points, k, spherical=spherical, max_points_per_centroid=per_centroid, backend=backend, seed=1
    )
    assert result.n_train_points == k * per_centroid
    assert result.assignments.shape == (3000,)
    assert result.assignments.min() >= 0 and result.assignments.max() < k
    if spherical:
        score = -_cosine(points, result.centroids)
    else:
        score = ((points[:, None, :] - result.centroids[None].astype(np.float64)) ** 2).sum(-1)
    chosen = score[np.arange(len(points)), result.assignments]
    # nearest up to float32 rounding of near-ties
    assert np.all(chosen <= score.min(1) + 1e-5 * (1.0 + np.abs(score.min(1))))
    clusters = kmeans_clusters(
        points, k, spherical=spherical, max_points_per_centroid=per_centroid, backend=backend, seed=1
    )
    assert clusters.n == 3000
    assert clusters.provenance["n_train_points"] == 80


def test_chunked_distances_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _overlapping(2, n=1500, dim=6)
    whole = fit_kmeans(points, 7, backend="torch", seed=4)
    monkeypatch.setattr(kmeans_module, "_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(kmeans_module, "_MIN_CHUNK_ROWS", 97)  # many blocks, last one ragged
    chunked = fit_kmeans(points, 7, backend="torch", seed=4)
    np.testing.assert_array_equal(whole.assignments, chunked.assignments)
    np.testing.assert_allclose(whole.centroids, chunked.centroids, rtol=1e-5, atol=1e-5)
    assert whole.objective == pytest.approx(chunked.objective, rel=1e-6)


def test_empty_cluster_is_reseeded_with_the_farthest_point() -> None:
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [100.0, 0.0]])
    start = torch.tensor([[0.05, 0.05], [1000.0, 1000.0]])  # the second centroid attracts no point
    centroids, labels, _ = kmeans_module._lloyd(x, start, n_iter=5, spherical=False)
    np.testing.assert_array_equal(labels.numpy(), [0, 0, 0, 0, 1])
    np.testing.assert_allclose(centroids.numpy(), [[0.05, 0.05], [100.0, 0.0]], atol=1e-6)


def test_deterministic_accelerator_sums_match_index_add(monkeypatch: pytest.MonkeyPatch) -> None:
    # the one-hot matmul path used on accelerators, exercised on the CPU in several blocks
    monkeypatch.setattr(kmeans_module, "_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(kmeans_module, "_MIN_CHUNK_ROWS", 64)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(300, 4)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 6, size=300))  # label 6 stays empty
    expected = np.zeros((7, 4))
    np.add.at(expected, labels.numpy(), x.numpy().astype(np.float64))
    for by_matmul in (False, True):
        sums = kmeans_module._cluster_sums(x, labels, 7, by_matmul=by_matmul)
        np.testing.assert_allclose(sums.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_duplicate_points_leave_empty_clusters_out_of_the_ids() -> None:
    points = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)  # only 2 distinct points
    result = kmeans_clusters(points, 4, backend="torch", seed=0)
    assert result.n_clusters == 2
    assert result.provenance["k"] == 4 and result.provenance["n_clusters"] == 2
    assert adjusted_rand_score(np.repeat([0, 1], 10), result.ids) == 1.0
    assert result.provenance["objective"] == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------------------------------------
# determinism, edge cases, inputs


def test_same_seed_gives_the_same_result(backend: str) -> None:
    points = _overlapping(3, n=1200, dim=5)
    first = fit_kmeans(points, 9, backend=backend, seed=11, max_points_per_centroid=50)
    second = fit_kmeans(points, 9, backend=backend, seed=11, max_points_per_centroid=50)
    np.testing.assert_array_equal(first.assignments, second.assignments)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.objective == second.objective


def test_k_equal_to_n_gives_singletons(backend: str) -> None:
    points = np.random.default_rng(0).normal(size=(12, 3))
    result = kmeans_clusters(points, 12, backend=backend, seed=0)
    assert result.n_clusters == 12
    assert result.provenance["objective"] == pytest.approx(0.0, abs=1e-9)


def test_k_equal_to_one(backend: str) -> None:
    points, _ = _blobs()
    result = fit_kmeans(points, 1, backend=backend, max_points_per_centroid=600)  # no subsampling
    np.testing.assert_array_equal(result.assignments, 0)
    np.testing.assert_allclose(result.centroids[0], points.mean(0), atol=1e-4)


def test_torch_tensor_and_other_float_dtypes_are_accepted() -> None:
    points, labels = _blobs()
    reference = fit_kmeans(points.astype(np.float32), 5, backend="torch", seed=2)
    for features in (torch.from_numpy(points), torch.from_numpy(points).half(), points.astype(np.float16)):
        result = fit_kmeans(features, 5, backend="torch", seed=2)
        assert adjusted_rand_score(labels, result.assignments) == 1.0
    same = fit_kmeans(torch.from_numpy(points), 5, backend="torch", seed=2)
    np.testing.assert_array_equal(reference.assignments, same.assignments)


def test_auto_backend_prefers_faiss_when_installed(monkeypatch) -> None:
    points, labels = _blobs()
    expected = "faiss" if importlib.util.find_spec("faiss") is not None else "torch"
    assert fit_kmeans(points, 5).backend == expected
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails, as when it is not installed
    fallback = fit_kmeans(points, 5)
    assert fallback.backend == "torch" and adjusted_rand_score(labels, fallback.assignments) == 1.0


@pytest.mark.parametrize(
    ("features", "k", "match"),
    [
        (np.zeros((5, 2)), 6, "k must be"),
        (np.zeros((5, 2)), 0, "k must be"),
        (np.zeros((5, 2)), -1, "k must be"),
        (np.zeros(5), 1, "two-dimensional"),
        (np.zeros((2, 3, 4)), 1, "two-dimensional"),
        (np.zeros((0, 3)), 1, "k must be"),
        (np.zeros((4, 0)), 1, "column"),
        (np.array([["a", "b"]]), 1, "real numbers"),
    ],
)
def test_invalid_inputs_raise(features: np.ndarray, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kmeans_clusters(features, k, backend="torch")


def test_non_finite_rows_raise_with_their_count(backend: str) -> None:
    points, _ = _blobs()
    points[3, 1] = np.nan
    points[10, 0] = np.inf
    points[10, 2] = np.nan  # same row: still one row
    with pytest.raises(ValueError, match="2 of 600 feature rows"):
        kmeans_clusters(points, 5, backend=backend)
    with pytest.raises(ValueError, match="1 of 1 feature rows"):
        kmeans_clusters(np.array([[1e300, 0.0]]), 1, backend=backend)  # overflows float32


def test_invalid_parameters_raise() -> None:
    points, _ = _blobs()
    with pytest.raises(ValueError, match="backend"):
        fit_kmeans(points, 5, backend="sklearn")
    with pytest.raises(ValueError, match="n_iter"):
        fit_kmeans(points, 5, n_iter=0)
    with pytest.raises(ValueError, match="n_restarts"):
        fit_kmeans(points, 5, n_restarts=0)
    with pytest.raises(ValueError, match="max_points_per_centroid"):
        fit_kmeans(points, 5, max_points_per_centroid=0)
    with pytest.raises(ValueError, match="seed"):
        fit_kmeans(points, 5, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="faiss backend runs on the CPU"):
        fit_kmeans(points, 5, backend="faiss", device="cuda")
