"""Features of a dataset's images under an encoder, in eval mode: what evaluation probes and what K-means
re-clusters during training."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from clinfonce.data.augment import EvalTransform
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.loaders import eval_loader
from clinfonce.models import Network


def extract_features(
    encoder: Network,
    dataset: ImageDataset,
    rows: np.ndarray,
    transform: EvalTransform,
    batch_size: int = 256,
    workers: int = 0,
    projection: bool = False,
) -> np.ndarray:
    """``float32 [len(rows), F]`` backbone features (or head outputs with ``projection``) in eval mode."""
    batches = (images for images, _, _ in eval_loader(dataset, rows, batch_size, workers))
    return embed_batches(encoder, batches, transform, projection)


@torch.no_grad()
def embed_batches(
    encoder: Network, batches: Iterable[torch.Tensor], transform: EvalTransform, projection: bool = False
) -> np.ndarray:
    """``float32 [N, F]`` of ``uint8 [B, C, H, W]`` batches (N images in all), in eval mode: backbone features
    (``F = encoder.feature_dim``) or head outputs with ``projection`` (``F = encoder.head_dim``); ``[0, F]``
    for no batch."""
    parameter = next(encoder.parameters())
    device, dtype = parameter.device, parameter.dtype
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        for images in batches:
            inputs = transform(images.to(device)).to(dtype)  # float64 for a 64-true run's weights
            chunks.append((encoder(inputs) if projection else encoder.features(inputs)).float().cpu())
    finally:
        encoder.train(was_training)
    if not chunks:
        return np.zeros((0, encoder.output_dim(projection)), dtype=np.float32)
    return torch.cat(chunks).numpy()
