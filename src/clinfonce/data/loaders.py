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
    """This process's share of a random permutation that depends only on ``(seed, epoch)``.

    Every epoch draws one permutation of the ``n`` samples and cuts it into global batches of
    ``batch_size * world_size`` (an incomplete last one is left out). Process ``rank`` takes positions
    ``rank, rank + world_size, ...`` of each, so the processes together train on exactly the global batches a
    single process with ``batch_size * world_size`` would, every sample at most once per epoch, and no sample
    is repeated to pad a shard.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from an epoch checkpoint visits
    the samples in the same order as an uninterrupted run (a plain ``RandomSampler`` draws from the global
    RNG, whose state is not in the checkpoint). :meth:`resume_within` makes a run resumed from a checkpoint
    saved in the middle of an epoch see the rest of that epoch's batches, and nothing else.

    Args:
        n: samples in the dataset.
        seed: the run's seed.
        batch_size: samples per step on one process.
        rank, world_size: this process and how many train together.
    """

    def __init__(self, n: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.n, self.seed, self.epoch = n, seed, 0
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.batches = n // (batch_size * world_size)  # steps per epoch
        self._skip: tuple[int, int] | None = None  # (epoch, batches to skip) for one iteration

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_within(self, epoch: int, batches: int) -> None:
        """Leave out the first ``batches`` steps of epoch ``epoch`` (they were trained on before the
        checkpoint); 0 leaves nothing out."""
        self._skip = (epoch, batches) if batches else None

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        used = self.batches * self.batch_size * self.world_size
        order = torch.randperm(self.n, generator=generator)[:used][self.rank :: self.world_size]
        if self._skip is not None and self._skip[0] == self.epoch:
            order, self._skip = order[self._skip[1] * self.batch_size :], None
        return _as_ints(order)

    def __len__(self) -> int:
        return self.batches * self.batch_size


def _as_ints(order: torch.Tensor, chunk: int = 65_536) -> Iterator[int]:
    """The elements of ``int64 [n]`` ``order`` as Python ints, converted a chunk at a time (a list of a
    million ints would take 36 MB)."""
    for start in range(0, len(order), chunk):
        yield from order[start : start + chunk].tolist()


def train_loader(
    dataset: ImageDataset,
    rows: np.ndarray,
    batch_size: int,
    seed: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Shuffled (per-epoch seeded) batches of ``batch_size`` for process ``rank`` of ``world_size``
    (:class:`EpochSeededSampler`); only full global batches (contrastive batches should be full, and every
    rank must hold the same number of samples for the distributed gather)."""
    data = RowDataset(dataset, rows)
    if len(data) < batch_size * world_size:
        from clinfonce.errors import InputError

        raise InputError(
            f"the training split has {len(data)} images, fewer than one global batch "
            f"(optim.batch_size={batch_size} x {world_size} process(es))"
        )
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=EpochSeededSampler(len(data), seed, batch_size, rank, world_size),
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def eval_loader(dataset: ImageDataset, rows: np.ndarray, batch_size: int, workers: int) -> DataLoader:
    """Batches of the given rows in order."""
    return DataLoader(RowDataset(dataset, rows), batch_size=batch_size, shuffle=False, num_workers=workers)
