"""Weighted kNN against a brute-force numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfonce.evaluation import knn_accuracy, knn_classify


def _brute_force(train_x, train_y, test_x, k, temperature, num_classes):
    """Full similarity matrix, argsort, exp(sim / τ) votes summed per class; float64."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sims = b.astype(np.float64) @ a.astype(np.float64).T
    nearest = np.argsort(-sims, axis=1)[:, :k]
    scores = np.zeros((len(test_x), num_classes))
    for row in range(len(test_x)):
        np.add.at(scores[row], train_y[nearest[row]], np.exp(sims[row, nearest[row]] / temperature))
    return scores


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, (7, 16))
    train_y, test_y = rng.integers(0, 7, 300), rng.integers(0, 7, 120)
    train_x = (means[train_y] + rng.normal(0, 1.0, (300, 16))).astype(np.float32)
    test_x = (means[test_y] + rng.normal(0, 1.0, (120, 16))).astype(np.float32)
    return train_x, train_y, test_x, test_y


def test_matches_brute_force(data):
    train_x, train_y, test_x, _ = data
    ours = knn_classify(train_x, train_y, test_x, ks=(1, 5, 20), temperature=0.1, chunk_size=32)
    for k in (1, 5, 20):
        reference = _brute_force(train_x, train_y, test_x, k, 0.1, 7)
        assert ours[k].shape == (120, 7)
        np.testing.assert_allclose(ours[k], reference, rtol=1e-4, atol=1e-6)


def test_chunk_size_does_not_change_results(data):
    train_x, train_y, test_x, _ = data
    whole = knn_classify(train_x, train_y, test_x, ks=(5, 50), chunk_size=10_000)
    for chunk in (1, 7, 64):
        chunked = knn_classify(torch.from_numpy(train_x), train_y, test_x, ks=(5, 50), chunk_size=chunk)
        for k in (5, 50):
            np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-5)


def test_one_nearest_neighbour_of_the_training_set_is_itself(data):
    train_x, train_y, _, _ = data
    assert knn_accuracy(train_x, train_y, train_x, train_y, ks=(1,))["knn1_top1"] == 100.0


def test_k_above_training_size_is_clamped(data):
    train_x, train_y, test_x, _ = data
    scores = knn_classify(train_x[:40], train_y[:40], test_x, ks=(40, 1000))
    np.testing.assert_array_equal(scores[1000], scores[40])
    reference = _brute_force(train_x[:40], train_y[:40], test_x, 40, 0.07, int(train_y[:40].max()) + 1)
    np.testing.assert_allclose(scores[40], reference, rtol=1e-4)


def test_accuracy_keys_and_values(data):
    train_x, train_y, test_x, test_y = data
    result = knn_accuracy(train_x, train_y, test_x, test_y, ks=(5, 20))
    assert set(result) == {"knn5_top1", "knn5_top5", "knn20_top1", "knn20_top5"}
    predicted = _brute_force(train_x, train_y, test_x, 20, 0.07, 7).argmax(1)
    assert result["knn20_top1"] == pytest.approx(100.0 * np.mean(predicted == test_y))
    top5 = np.argsort(-_brute_force(train_x, train_y, test_x, 20, 0.07, 7), axis=1)[:, :5]
    assert result["knn20_top5"] == pytest.approx(100.0 * np.mean((top5 == test_y[:, None]).any(axis=1)))
    assert 50.0 < result["knn20_top1"] <= result["knn20_top5"]
    three = knn_accuracy(train_x, train_y % 3, test_x, test_y % 3, ks=(5,))
    assert set(three) == {"knn5_top1"}  # no top-5 with fewer than 5 classes


def test_one_based_labels_are_rejected(data):
    train_x, train_y, test_x, _ = data
    with pytest.raises(ValueError, match=r"labels must be 0\.\.C-1; got min 1"):
        knn_classify(train_x, train_y + 1, test_x)
