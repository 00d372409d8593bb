"""The Python API of the whole pipeline: train a run, evaluate it, embed images with it.

>>> import clinfonce
>>> run = clinfonce.train("shapes", {"train.epochs": 5, "train.out": "runs/shapes"})
>>> run.metrics["linear_top1"]
>>> encoder = clinfonce.load_encoder(run)
>>> vectors = encoder.embed(["a.png", "b.jpg"])          # float32 [2, D]

Every function is quiet (no progress bar, no Lightning tips, no warnings) unless ``verbose=True``; user
mistakes raise :class:`clinfonce.InputError` naming the file, key or value at fault. ``docs/api.md`` has
the examples (the test suite runs them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clinfonce.logs import library_output

if TYPE_CHECKING:
    from clinfonce.config import Config
    from clinfonce.data.dataset import ImageDataset
    from clinfonce.encoder import Encoder
    from clinfonce.run import Run


def train(
    config: str | os.PathLike | Mapping[str, Any] | Config,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    evaluate: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
) -> Run:
    """Stage 1, stage 2 and (by default) the evaluation, into a run directory.

    Args:
        config: a YAML path, a bundled config name (``"shapes"``, ``"cub200"``, ...), a nested mapping or a
            :class:`~clinfonce.config.Config`.
        overrides: ``{"train.epochs": 5, "optim.lr": 0.01}`` or ``["train.epochs=5"]``.
        evaluate: run the linear probe and kNN after training (as ``eval.enabled`` says).
        resume: continue the run in ``train.out`` from its newest checkpoint (same config).
        overwrite: replace a run already in ``train.out``.
        verbose: print progress (stage 1, one line per epoch, evaluation) on stderr.

    Returns:
        The :class:`~clinfonce.run.Run` as trained (its encoder, clusters and summary in memory), with its
        ``metrics`` when evaluated (on global rank 0 only, once per run).
    """
    from lightning.pytorch.utilities import rank_zero_only

    from clinfonce.config import load_config
    from clinfonce.training.engine import decide_start, with_run_dir
    from clinfonce.training.engine import train as train_run

    items = dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])
    resolved = with_run_dir(load_config(config, items))  # the run's folder, named once
    if resume:
        resolved = dataclasses.replace(resolved, train=dataclasses.replace(resolved.train, resume="auto"))
    if not verbose:
        resolved = dataclasses.replace(
            resolved, train=dataclasses.replace(resolved.train, progress_bar=False)
        )
    with library_output(verbose):
        start = decide_start(resolved, overwrite)  # before the dataset is read: a refused start fails fast
        dataset = resolved.data.load()
        run = train_run(resolved, dataset=dataset, overwrite=overwrite, start=start)
        if evaluate and resolved.eval.enabled and rank_zero_only.rank == 0:  # one evaluation per run
            from clinfonce.evaluation.pipeline import evaluate_run

            run = dataclasses.replace(run, metrics=evaluate_run(run, dataset))
    return run


def evaluate(
    run_or_checkpoint: Run | str | os.PathLike,
    dataset: ImageDataset | str | None = None,
    *,
    out: str | os.PathLike | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Linear-probe and kNN accuracy (percent) of a run's encoder, or of one of its checkpoints.

    Args:
        run_or_checkpoint: a :class:`~clinfonce.run.Run` (used as it is: nothing is read back), a run
            directory, its ``encoder.pt`` or a Lightning checkpoint.
        dataset: the data to evaluate on: a loaded dataset, a bundled config's name whose data to use, or
            None for the run's own.
        out: where ``metrics.json`` and ``report.md`` go; needed unless the run's final encoder is evaluated
            on its own data (whose report it then replaces).
        verbose: print progress on stderr.
    """
    from clinfonce.evaluation.pipeline import evaluate_checkpoint, evaluate_run
    from clinfonce.run import Run

    out_dir = None if out is None else Path(out)
    with library_output(verbose):
        if isinstance(dataset, str):
            from clinfonce.config import load_config

            dataset = load_config(dataset).data.load()
        if isinstance(run_or_checkpoint, Run):
            data = dataset if dataset is not None else run_or_checkpoint.config.data.load()
            return evaluate_run(run_or_checkpoint, data, out_dir=out_dir)
        return evaluate_checkpoint(Path(run_or_checkpoint), dataset, out_dir)


def load_encoder(run_or_checkpoint: Run | str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """The encoder of a run (its final encoder), of a run directory (its ``encoder.pt``), of a checkpoint, or
    of a loose ``encoder.pt``, with the run's own preprocessing.

    Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
    """
    from clinfonce.encoder import Encoder
    from clinfonce.errors import InputError
    from clinfonce.run import Run

    if isinstance(run_or_checkpoint, Run):
        if run_or_checkpoint.encoder is None:
            raise InputError(f"{run_or_checkpoint.dir}: the run has no trained encoder yet")
        return run_or_checkpoint.encoder.to(device)
    return Encoder.load(run_or_checkpoint).to(device)
