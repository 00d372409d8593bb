"""Features of a dataset's images under an encoder, in eval mode: what evaluation probes and what K-means
re-clusters during training."""

from __future__ import annotations

import numpy as np
import torch

from clinfonce.data.augment import EvalTransform
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.loaders import eval_loader
from clinfonce.models import Encoder


@torch.no_grad()
def extract_features(
    encoder: Encoder,
    dataset: ImageDataset,
    rows: np.ndarray,
    transform: EvalTransform,
    batch_size: int = 256,
    workers: int = 0,
    projection: bool = False,
) -> np.ndarray:
    """``float32 [len(rows), F]`` backbone features (or head outputs with ``projection``) in eval mode."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for images, _, _ in eval_loader(dataset, rows, batch_size, workers):
        inputs = transform(images.to(device))
        chunks.append((encoder(inputs) if projection else encoder.features(inputs)).float().cpu())
    encoder.train(was_training)
    if not chunks:
        return np.zeros((0, encoder.feature_dim), dtype=np.float32)
    return torch.cat(chunks).numpy()
