"""Assembling a dataset decoded into memory (CIFAR, Fashion-MNIST, Omniglot): labels, validation split,
resize, statistics.

- Labels are class names sorted (see :func:`~clinfonce.data.dataset.encode_labels`).
- ``train_per_class`` keeps a seeded sample of that many training images of each class (drawn first, by
  the rule of :func:`~clinfonce.data.splits.training_sample`, with the seed ``seed``); the test split is
  kept whole.
- The validation split (``val_fraction``) is drawn from the training rows in row order (the rows have no
  file path to sort by; see :mod:`clinfonce.data.splits` for the rule).
- ``image_size`` other than the stored size resizes every image once, bilinear with antialiasing.
- Mean and std are computed from the training images, exactly (256-bin histograms).
- Every table has a ``path`` column naming each image uniquely, as the file-backed datasets do, so that
  cluster files and embeddings can be joined back; for images stored as rows of an array file it is
  ``<file>/<row in the file>`` (:func:`row_paths`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from clinfonce.data.dataset import AuxInfo, ImageDataset, array_loader, encode_labels
from clinfonce.data.files import size_pair
from clinfonce.data.options import InMemoryOptions
from clinfonce.data.splits import training_sample, with_validation


def in_memory_dataset(
    name: str,
    images: np.ndarray,
    table: pd.DataFrame,
    class_names: list[str],
    options: InMemoryOptions,
    aux: AuxInfo,
    *,
    resized: bool = False,
    all_classes: Sequence[str] | None = None,
    skipped: dict[str, str] | None = None,
) -> ImageDataset:
    """Assemble an in-memory dataset: labels, validation split, resize, statistics.

    Args:
        name: the dataset's name.
        images: ``uint8 [N, H, W(, C)]``, one per table row.
        table: one row per image with ``path``, ``split`` and any auxiliary columns; ``label`` is added.
        class_names: ``[N]`` the class name of each row.
        options: the source's options (``image_size``, ``val_fraction``, ``seed``).
        aux: the auxiliary information.
        resized: the images already have the size ``options.image_size``.
        all_classes: the source's full class list, if it declares one.
        skipped: images left out because they could not be decoded (path -> reason).
    """
    size = size_pair(options.image_size)
    if options.train_per_class is not None:
        images, table, class_names = _sample_training(images, table, class_names, options)
    if not resized:
        images = resize_images(images, size)
    labels, names = encode_labels(class_names, all_classes)
    table = table.reset_index(drop=True)
    table.insert(0, "label", labels)
    keys = np.char.zfill(np.arange(len(table)).astype(str), 9)  # row order
    table["split"] = with_validation(table["split"], labels, keys, options.val_fraction, options.seed)
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    mean, std = channel_stats(images, train if len(train) else np.arange(len(images)))
    return ImageDataset(
        name=name,
        table=table,
        class_names=names,
        loader=array_loader(images),
        image_size=size,
        channels=images.shape[3] if images.ndim == 4 else 1,
        mean=mean,
        std=std,
        aux=aux,
        root=None,
        skipped=dict(skipped or {}),
    )


def _sample_training(
    images: np.ndarray, table: pd.DataFrame, class_names: list[str], options: InMemoryOptions
) -> tuple[np.ndarray, pd.DataFrame, list[str]]:
    """Keep ``options.train_per_class`` training rows of each class (and every other row)."""
    picked = training_sample(
        class_names,
        table["path"].to_numpy(),
        table["split"].to_numpy(),
        options.train_per_class,
        options.seed,
    )
    keep = np.flatnonzero(picked)
    names = [class_names[i] for i in keep]
    return images[keep], table.iloc[keep].reset_index(drop=True), names


def row_paths(file_name: str, n: int) -> list[str]:
    """The ``path`` identifiers of the ``n`` images stored in ``file_name``: ``"<file_name>/<row>"``."""
    return [f"{file_name}/{row}" for row in range(n)]


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [N, H, W(, C)]`` resized to ``size`` (bilinear, antialiased), in chunks."""
    if images.shape[1:3] == size:
        return images
    out = np.empty((len(images), *size, *images.shape[3:]), dtype=np.uint8)
    for start in range(0, len(images), 4096):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 4096]))
        chunk = chunk.unsqueeze(-1) if chunk.ndim == 3 else chunk
        resized = torch.nn.functional.interpolate(
            chunk.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )
        result = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out[start : start + len(result)] = result if images.ndim == 4 else result[..., 0]
    return out


def channel_stats(
    images: np.ndarray, rows: np.ndarray
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of ``images[rows]`` in [0, 1] units, exact, from 256-bin histograms
    accumulated in chunks (grayscale: the one value repeated)."""
    n_channels = images.shape[3] if images.ndim == 4 else 1
    counts = np.zeros((n_channels, 256), dtype=np.int64)
    for start in range(0, len(rows), 4096):
        chunk = images[rows[start : start + 4096]].reshape(-1, n_channels)
        for c in range(n_channels):
            counts[c] += np.bincount(chunk[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for c in range(n_channels):
        total = counts[c].sum()
        mean = float((counts[c] * values).sum() / total) if total else 0.5
        var = float((counts[c] * (values - mean) ** 2).sum() / total) if total else 0.0625
        means.append(mean)
        stds.append(var**0.5)
    if n_channels == 1:
        means, stds = means * 3, stds * 3
    return (means[0], means[1], means[2]), (stds[0], stds[1], stds[2])
