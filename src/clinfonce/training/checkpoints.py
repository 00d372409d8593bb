"""Checkpoints a kill cannot corrupt, and the newest ones kept.

Lightning writes a checkpoint by opening the target and streaming into it, so a process killed mid-write
leaves a truncated ``last.ckpt``. :class:`AtomicCheckpointIO` writes a temporary file beside the target and
renames it into place: a checkpoint file is complete or absent, never half-written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from clinfonce._io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then into a temporary file in the checkpoint's folder, then an atomic
    rename. (Serialising to memory first costs one copy of the checkpoint, as Lightning's own save does,
    but makes a full disk an ``OSError`` naming its cause: torch's file writer reports it as a bare
    ``RuntimeError``.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_open(Path(path), "wb") as handle:
            handle.write(buffer.getbuffer())


def checkpointers(
    folder: Path, every_n_epochs: int, every_n_steps: int | None, keep: int
) -> list[ModelCheckpoint]:
    """One checkpointer per schedule (Lightning's takes epochs or steps, not both), each keeping its newest
    ``keep`` files; the epoch one also keeps ``last.ckpt``."""
    schedules: dict[str, dict[str, Any]] = {
        "epoch{epoch:04d}": {"every_n_epochs": every_n_epochs, "save_last": True}
    }
    if every_n_steps:
        schedules["step{step:08d}"] = {"every_n_train_steps": every_n_steps}
    return [
        # "step" is always among Lightning's monitor candidates: the top k by step are the newest k
        ModelCheckpoint(
            dirpath=folder,
            filename=filename,
            auto_insert_metric_name=False,
            monitor="step",
            mode="max",
            save_top_k=keep,
            enable_version_counter=False,  # a resumed run overwrites last.ckpt, never adds last-v1.ckpt
            **schedule,
        )
        for filename, schedule in schedules.items()
    ]
