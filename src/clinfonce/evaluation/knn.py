"""Weighted k-nearest-neighbour classification on cached features (InstDisc / DINO style).

Features are L2-normalised, so similarity is the cosine. Each test row takes its k most similar training
rows; neighbour ``j`` votes for its label with weight ``exp(sim_j / temperature)``, and a class's score is
the sum of its votes. Test rows are processed in chunks, so memory stays ``O(chunk_size * N_train)``: the
full ``N_test x N_train`` similarity matrix never exists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clinfonce.errors import InputError
from clinfonce.evaluation.linear_probe import ArrayLike, _as_features, _as_labels, topk_accuracy

__all__ = ["knn_accuracy", "knn_classify"]


def knn_classify(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> dict[int, np.ndarray]:
    """Weighted kNN class scores of the test rows, for several k at once.

    Args:
        train_x: ``[N, F]`` training (memory bank) features; L2-normalised here.
        train_y: ``[N]`` integer labels in ``0..C-1``.
        test_x: ``[M, F]`` query features; L2-normalised here.
        ks: neighbour counts. A k larger than N is clamped to N (all training rows vote); the result is
            still keyed by the k requested.
        temperature: τ of the vote weights ``exp(cosine / τ)`` (computed in float32: keep τ above ~0.012,
            below that ``exp(1 / τ)`` overflows).
        chunk_size: test rows per block; peak memory is about ``chunk_size * N`` floats.
        device: where the similarities are computed.
        num_classes: C; by default ``max(train_y) + 1`` (and then the smallest label must be 0).

    Returns:
        ``{k: float32 [M, C] scores}``: the summed vote weight of each class (0 for classes without a
        neighbour). ``argmax`` over classes is the prediction.
    """
    if not ks or min(ks) < 1:
        raise InputError(f"ks must be positive neighbour counts; got {list(ks)}")
    if temperature <= 0 or chunk_size < 1:
        raise InputError(f"temperature and chunk_size must be positive; got {temperature} and {chunk_size}")
    bank = F.normalize(_as_features(train_x, device), dim=1)
    queries = F.normalize(_as_features(test_x, device), dim=1)
    labels = _as_labels(train_y, device, num_classes=num_classes)
    if len(bank) != len(labels) or len(bank) == 0:
        raise InputError(
            f"need a non-empty training set with one label per row; got {len(bank)} rows, {len(labels)} labels"
        )
    if queries.shape[1] != bank.shape[1]:
        raise InputError(f"test features have {queries.shape[1]} columns, training features {bank.shape[1]}")
    n_classes = num_classes or int(labels.max()) + 1
    k_max = min(max(ks), len(bank))

    scores = {k: np.zeros((len(queries), n_classes), dtype=np.float32) for k in ks}
    for start in range(0, len(queries), chunk_size):
        sims, idx = (queries[start : start + chunk_size] @ bank.T).topk(k_max, dim=1)  # sorted, descending
        votes = (sims / temperature).exp_()
        neighbour_labels = labels[idx]
        for k in ks:
            k_eff = min(k, k_max)
            block = torch.zeros(len(idx), n_classes, device=bank.device)
            block.scatter_add_(1, neighbour_labels[:, :k_eff], votes[:, :k_eff])
            scores[k][start : start + len(idx)] = block.cpu().numpy()
    return scores


def knn_accuracy(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Weighted kNN accuracy of the test rows, in percent.

    Args:
        train_x, train_y, test_x, ks, temperature, chunk_size, device: as in :func:`knn_classify`.
        test_y: ``[M]`` integer labels in ``0..C-1``.

    Returns:
        ``{"knn{k}_top1": ..., "knn{k}_top5": ...}`` for each k, in percent; top-5 only when C >= 5. C is
        ``max(train_y, test_y) + 1``.
    """
    train_labels = _as_labels(train_y, "cpu")  # the smallest training label must be 0
    test_labels = _as_labels(test_y, "cpu", num_classes=sys.maxsize)  # any class may be absent from test
    if len(train_labels) == 0 or len(test_labels) != len(test_x):
        raise InputError(
            f"need training labels and one label per test row; got {len(test_labels)} for {len(test_x)}"
        )
    n_classes = max(int(train_labels.max()), int(test_labels.max()) if len(test_labels) else 0) + 1
    scores = knn_classify(train_x, train_labels, test_x, ks, temperature, chunk_size, device, n_classes)
    result = {}
    for k, block in scores.items():
        for name, value in topk_accuracy(torch.from_numpy(block), test_labels).items():
            result[f"knn{k}_{name}"] = value
    return result
