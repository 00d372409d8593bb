"""K-means stage 1 (faiss.Kmeans) against independent references: scikit-learn, numpy brute force."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.kmeans import KMeansResult, fit_kmeans, kmeans_clusters
from clinfonce.errors import InputError


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


def _sq_dist(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centroids[None].astype(np.float64)) ** 2).sum(-1)


def _cosine(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    p = points.astype(np.float64)
    c = centroids.astype(np.float64)
    return (p / np.linalg.norm(p, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T


def _assert_nearest(points: np.ndarray, result: KMeansResult, spherical: bool) -> None:
    """Every point sits with its nearest centroid (brute force), up to float32 rounding of near-ties."""
    score = -_cosine(points, result.centroids) if spherical else _sq_dist(points, result.centroids)
    chosen = score[np.arange(len(points)), result.assignments]
    best = score.min(1)
    assert np.all(chosen <= best + 1e-5 * (1.0 + np.abs(best)))


# ------------------------------------------------------------------------------------------------------------
# recovery of known structure


def test_recovers_well_separated_blobs_like_sklearn() -> None:
    points, labels = _blobs()
    result = kmeans_clusters(points, 5, seed=0)
    assert isinstance(result, ClusterAssignment)
    assert result.n == 600 and result.n_clusters == 5
    reference = KMeans(n_clusters=5, n_init=5, random_state=0).fit(points)
    assert adjusted_rand_score(reference.labels_, result.ids) == 1.0
    assert adjusted_rand_score(labels, result.ids) == 1.0
    prov = result.provenance
    assert prov["method"] == "kmeans" and prov["implementation"] == "faiss.Kmeans"
    assert prov["faiss_version"] == faiss.__version__
    assert prov["k"] == 5 and prov["n_clusters"] == 5 and prov["n_points"] == 600
    assert prov["n_train_points"] == 600 and prov["seed"] == 0 and prov["spherical"] is False
    assert prov["niter"] == 20 and prov["nredo"] == 5 and prov["max_points_per_centroid"] == 256
    assert prov["inertia"] == pytest.approx(reference.inertia_, rel=1e-6)  # the same optimum
    # keys name the centroid row of each cluster; ids follow the centroid order
    fitted = fit_kmeans(points, 5, seed=0)
    assert [int(key) for key in result.keys] == sorted(np.unique(fitted.assignments).tolist())
    np.testing.assert_array_equal(np.asarray(result.keys, dtype=int)[result.ids], fitted.assignments)


def test_fit_result_shapes_inertia_and_nearest_assignment() -> None:
    points, _ = _blobs(seed=1)
    result = fit_kmeans(points, 5, seed=3)
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (5, 8) and result.centroids.dtype == np.float32
    assert result.assignments.shape == (600,) and result.assignments.dtype == np.int64
    assert result.n_train_points == 600
    assert result.inertia == pytest.approx(_inertia(points, result.centroids, result.assignments), rel=1e-9)
    np.testing.assert_array_equal(result.assignments, _sq_dist(points, result.centroids).argmin(1))


def test_inertia_matches_sklearn_on_overlapping_data() -> None:
    for seed in range(3):
        points = _overlapping(seed)
        reference = KMeans(n_clusters=12, n_init=5, random_state=seed).fit(points).inertia_
        result = fit_kmeans(points, 12, seed=seed)
        assert result.inertia == pytest.approx(
            _inertia(points, result.centroids, result.assignments), rel=1e-9
        )
        ratio = result.inertia / reference
        assert 0.95 <= ratio <= 1.05, f"seed {seed}: faiss inertia / sklearn inertia = {ratio:.4f}"


# ------------------------------------------------------------------------------------------------------------
# spherical


def test_spherical_clusters_by_direction_not_norm() -> None:
    points, labels = _rays()
    result = fit_kmeans(points, 3, spherical=True, seed=0)
    assert adjusted_rand_score(labels, result.assignments) == 1.0
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    cosine = _cosine(points, result.centroids)
    np.testing.assert_array_equal(result.assignments, cosine.argmax(1))
    expected = float((1.0 - cosine[np.arange(len(points)), result.assignments]).sum())
    assert result.inertia == pytest.approx(expected, rel=1e-9)
    clusters = kmeans_clusters(points, 3, spherical=True, seed=0)
    assert clusters.provenance["spherical"] is True
    assert clusters.provenance["inertia"] == pytest.approx(expected, rel=1e-9)


def test_spherical_equals_euclidean_kmeans_of_unit_vectors_in_partition() -> None:
    # on unit vectors, nearest by cosine = nearest by Euclidean distance: sklearn on the normalised rays
    points, _ = _rays(seed=2)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    reference = KMeans(n_clusters=3, n_init=5, random_state=0).fit(unit).labels_
    assert adjusted_rand_score(reference, fit_kmeans(points, 3, spherical=True).assignments) == 1.0


def test_euclidean_kmeans_does_not_recover_rays() -> None:
    # sanity check of the spherical test: the norms dominate plain K-means on this data
    points, labels = _rays()
    assert adjusted_rand_score(labels, fit_kmeans(points, 3, seed=0).assignments) < 0.9


def test_spherical_tolerates_zero_rows() -> None:
    points, _ = _rays()
    points[:4] = 0.0
    result = fit_kmeans(points, 3, spherical=True, seed=0)
    assert result.assignments.shape == (len(points),)
    # each zero row has cosine 0 to its centroid: it adds exactly 1 to the inertia
    cosine = _cosine(points[4:], result.centroids)
    expected = 4.0 + float((1.0 - cosine[np.arange(len(points) - 4), result.assignments[4:]]).sum())
    assert result.inertia == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------------------------------
# subsampled training and batched assignment


@pytest.mark.parametrize("spherical", [False, True])
def test_subsampled_training_still_assigns_every_point_to_its_nearest_centroid(spherical: bool) -> None:
    points = _overlapping(7, n=3000, dim=6)
    k, per_centroid = 8, 10  # trains on 80 of the 3000 points
    result = fit_kmeans(points, k, spherical=spherical, max_points_per_centroid=per_centroid, seed=1)
    assert result.n_train_points == k * per_centroid
    assert result.assignments.shape == (3000,)
    assert result.assignments.min() >= 0 and result.assignments.max() < k
    _assert_nearest(points, result, spherical)
    clusters = kmeans_clusters(points, k, spherical=spherical, max_points_per_centroid=per_centroid, seed=1)
    assert clusters.n == 3000
    assert clusters.provenance["n_train_points"] == 80
    # no subsample once k * max_points_per_centroid covers every row
    assert fit_kmeans(points, k, max_points_per_centroid=375).n_train_points == 3000


def test_subsampled_training_on_blobs_still_recovers_them() -> None:
    points, labels = _blobs(per_blob=400)
    result = fit_kmeans(points, 5, max_points_per_centroid=20, seed=5)  # 100 of 2000 rows
    assert result.n_train_points == 100
    assert adjusted_rand_score(labels, result.assignments) == 1.0


@pytest.mark.parametrize("spherical", [False, True])
def test_batched_assignment_equals_unbatched(spherical: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    points = _overlapping(2, n=1500, dim=6)
    kwargs = {"spherical": spherical, "max_points_per_centroid": 40, "seed": 4}  # subsample: 280 rows
    whole = fit_kmeans(points, 7, batch_size=len(points), **kwargs)

    searched: list[int] = []  # rows of every search of the trained index (training searches in C++)
    index_class = faiss.IndexFlatIP if spherical else faiss.IndexFlatL2
    search = index_class.search

    def recording_search(self, x, k, *args, **kw):
        searched.append(len(x))
        return search(self, x, k, *args, **kw)

    monkeypatch.setattr(index_class, "search", recording_search)
    batched = fit_kmeans(points, 7, batch_size=97, **kwargs)  # many blocks, the last one ragged
    assert searched == [97] * 15 + [45]
    assert whole.n_train_points == batched.n_train_points == 280
    np.testing.assert_array_equal(whole.centroids, batched.centroids)
    np.testing.assert_array_equal(whole.assignments, batched.assignments)
    assert whole.inertia == pytest.approx(batched.inertia, rel=1e-12)
    _assert_nearest(points, batched, spherical)


def test_memory_mapped_features_give_the_same_result(tmp_path) -> None:
    points = _overlapping(5, n=1200, dim=4).astype(np.float32)
    np.save(tmp_path / "f.npy", points)
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    kwargs = {"max_points_per_centroid": 30, "seed": 2, "batch_size": 256}
    in_memory = fit_kmeans(points, 6, **kwargs)
    from_disk = fit_kmeans(mapped, 6, **kwargs)
    np.testing.assert_array_equal(in_memory.assignments, from_disk.assignments)
    np.testing.assert_array_equal(in_memory.centroids, from_disk.centroids)


# ------------------------------------------------------------------------------------------------------------
# empty clusters, determinism, edge cases, inputs


def test_duplicate_points_leave_empty_clusters_out_of_the_ids() -> None:
    points = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)  # only 2 distinct points
    result = kmeans_clusters(points, 4, seed=0)
    assert result.n_clusters == 2 and result.n == 20
    assert result.provenance["k"] == 4 and result.provenance["n_clusters"] == 2
    assert adjusted_rand_score(np.repeat([0, 1], 10), result.ids) == 1.0
    assert len(result.keys) == 2
    # faiss splits empty clusters by perturbing centroids by a relative 1/1024: near, not exactly, 0
    assert result.provenance["inertia"] == pytest.approx(0.0, abs=1e-3)


def test_same_seed_gives_the_same_result() -> None:
    points = _overlapping(3, n=1200, dim=5)
    first = fit_kmeans(points, 9, seed=11, max_points_per_centroid=50)
    second = fit_kmeans(points, 9, seed=11, max_points_per_centroid=50)
    np.testing.assert_array_equal(first.assignments, second.assignments)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.inertia == second.inertia
    ids = [kmeans_clusters(points, 9, seed=11, max_points_per_centroid=50).ids for _ in range(2)]
    np.testing.assert_array_equal(*ids)


def test_k_equal_to_n_gives_singletons() -> None:
    points = np.random.default_rng(0).normal(size=(12, 3))
    result = kmeans_clusters(points, 12, seed=0)
    assert result.n_clusters == 12
    assert result.provenance["inertia"] == pytest.approx(0.0, abs=1e-9)


def test_k_equal_to_one() -> None:
    points, _ = _blobs()
    result = fit_kmeans(points, 1, max_points_per_centroid=600)  # no subsampling
    np.testing.assert_array_equal(result.assignments, 0)
    np.testing.assert_allclose(result.centroids[0], points.mean(0), atol=1e-4)


def test_torch_tensors_and_other_dtypes_are_accepted() -> None:
    points, labels = _blobs()
    reference = fit_kmeans(points.astype(np.float32), 5, seed=2)
    for features in (
        torch.from_numpy(points),
        torch.from_numpy(points).half(),
        torch.from_numpy(points).bfloat16(),
        torch.from_numpy(points).requires_grad_(),
        points.astype(np.float16),
        np.rint(points).astype(np.int32),
    ):
        result = fit_kmeans(features, 5, seed=2)
        assert adjusted_rand_score(labels, result.assignments) == 1.0
    same = fit_kmeans(torch.from_numpy(points), 5, seed=2)
    np.testing.assert_array_equal(reference.assignments, same.assignments)


@pytest.mark.parametrize(
    ("features", "k", "match"),
    [
        (np.zeros((5, 2)), 6, "k must be"),
        (np.zeros((5, 2)), 0, "k must be"),
        (np.zeros((5, 2)), -1, "k must be"),
        (np.zeros((5, 2)), 2.0, "k must be"),
        (np.zeros((5, 2)), True, "k must be"),
        (np.zeros(5), 1, "two-dimensional"),
        (np.zeros((2, 3, 4)), 1, "two-dimensional"),
        (np.zeros((0, 3)), 1, "k must be"),
        (np.zeros((4, 0)), 1, "column"),
        (np.array([["a", "b"]]), 1, "real numbers"),
        (np.ones((3, 2), dtype=bool), 1, "real numbers"),
        (np.ones((3, 2), dtype=complex), 1, "real numbers"),
    ],
)
def test_invalid_inputs_raise(features: np.ndarray, k: int, match: str) -> None:
    with pytest.raises(InputError, match=match):
        kmeans_clusters(features, k)


def test_non_finite_rows_raise_with_their_count() -> None:
    points, _ = _blobs()
    points[3, 1] = np.nan
    points[10, 0] = np.inf
    points[10, 2] = np.nan  # same row: still one row
    points[599, 0] = -np.inf  # in the last, ragged block
    with pytest.raises(InputError, match="3 of 600 feature rows"):
        kmeans_clusters(points, 5, batch_size=7)
    with pytest.raises(InputError, match="1 of 1 feature rows"):
        kmeans_clusters(np.array([[1e300, 0.0]]), 1)  # overflows float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"niter": 0}, "niter"),
        ({"nredo": 0}, "nredo"),
        ({"max_points_per_centroid": 0}, "max_points_per_centroid"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"seed": 1.5}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
    ],
)
def test_invalid_parameters_raise(kwargs: dict, match: str) -> None:
    points, _ = _blobs()
    with pytest.raises(InputError, match=match):
        fit_kmeans(points, 5, **kwargs)
