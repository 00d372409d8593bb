"""Batches of ``(images uint8 [B, C, H, W], labels int64 [B], rows int64 [B])`` from an ImageDataset."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clinfonce.data.dataset import ImageDataset


class RowDataset(Dataset):
    """The given table rows of a dataset; item ``i`` is ``(image uint8 [C, H, W], label, row)``."""

    def __init__(self, dataset: ImageDataset, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = dataset.table["label"].to_numpy(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.rows[i])
        return self.dataset.loader(row), int(self.labels[row]), row


class EpochSeededSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from an epoch checkpoint visits
    the samples in the same order as an uninterrupted run (a plain ``RandomSampler`` draws from the global
    RNG, whose state is not in the checkpoint). :meth:`resume_within` makes a run resumed from a checkpoint
    saved in the middle of an epoch see the rest of that epoch's permutation, and nothing else.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self._skip: tuple[int, int] | None = None  # (epoch, samples to skip) for one iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_within(self, epoch: int, samples: int) -> None:
        """Leave out the first ``samples`` of epoch ``epoch``'s permutation (they were trained on before the
        checkpoint); 0 leaves nothing out."""
        self._skip = (epoch, samples) if samples else None

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        if self._skip is not None and self._skip[0] == self.epoch:
            order, self._skip = order[self._skip[1] :], None
        return iter(order)

    def __len__(self) -> int:
        return self.n


def train_loader(
    dataset: ImageDataset, rows: np.ndarray, batch_size: int, seed: int, workers: int
) -> DataLoader:
    """Shuffled (per-epoch seeded) batches, incomplete last batch dropped (contrastive batches should be
    full, and every rank must hold the same number of samples for the distributed gather)."""
    data = RowDataset(dataset, rows)
    if len(data) < batch_size:
        from clinfonce.errors import InputError

        raise InputError(
            f"the training split has {len(data)} images, fewer than optim.batch_size={batch_size}"
        )
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=EpochSeededSampler(len(data), seed),
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def eval_loader(dataset: ImageDataset, rows: np.ndarray, batch_size: int, workers: int) -> DataLoader:
    """Batches of the given rows in order."""
    return DataLoader(RowDataset(dataset, rows), batch_size=batch_size, shuffle=False, num_workers=workers)
