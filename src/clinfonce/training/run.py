"""``train(config)``: stage 1, stage 2 and the run directory.

A run directory holds everything needed to understand and repeat a run::

    config.yaml          the resolved configuration
    environment.json     seed, command, versions, machine
    clusters.csv/.json   the stage-1 cluster of every training image and how it was made (provenance)
    cluster_stats.json   H(Z), I(Z;T), ... of those clusters against the training labels
    skipped.csv          images left out by data.skip_bad (path, reason), when any
    checkpoints/         Lightning checkpoints every N epochs and last.ckpt (for resume)
    logs/                metrics.csv and TensorBoard events
    encoder.pt           the trained encoder (plain tensors and config; safe to load)
    metrics.json, report.md   written by the evaluation
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from clinfonce._io import atomic_write_with, load_checkpoint, write_json
from clinfonce.clusters import cluster_stats
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import dataset_from_config
from clinfonce.errors import InputError
from clinfonce.models import ENCODER_FORMAT
from clinfonce.training.config import Config, save_config
from clinfonce.training.csv_log import ResumableCSVLogger
from clinfonce.training.environment import environment
from clinfonce.training.loader import train_loader
from clinfonce.training.module import ContrastiveModule
from clinfonce.training.stage1 import build_clusters, full_length_ids

ENCODER_FILE = "encoder.pt"


def train(config: Config, callbacks: Sequence[Callback] = (), dataset: ImageDataset | None = None) -> Path:
    """Run stage 1 and train the encoder; return the run directory.

    Args:
        config: a validated configuration.
        callbacks: extra Lightning callbacks.
        dataset: an already loaded dataset (else ``config.data`` is loaded).
    """
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    run_dir = resolve_run_dir(config)
    resume = _resume_checkpoint(config, run_dir)
    resume_step = _checkpoint_step(resume) if resume else None  # fails early on a bad file
    if dataset is None:
        dataset = dataset_from_config(config.to_dict()["data"])
    rows = dataset.rows("train")
    if len(rows) == 0:
        raise InputError(f"dataset {dataset.name!r} has no training images")
    clusters = build_clusters(dataset, config.clusters, rows) if config.method.name == "clinfonce" else None
    if rank_zero_only.rank == 0:
        _write_run_files(run_dir, config, dataset, rows, clusters, fresh=resume is None)
    ids = full_length_ids(clusters, rows, len(dataset))
    module = ContrastiveModule(
        config,
        n_rows=len(dataset),
        n_classes=dataset.n_classes,
        crop_size=config.data.crop_size or dataset.image_size[0],
        mean=dataset.mean,
        std=dataset.std,
        cluster_ids=torch.from_numpy(ids),
    )
    trainer = build_trainer(config, run_dir, callbacks, resume_step)
    loader = train_loader(dataset, rows, config.optim.batch_size, config.train.seed, config.data.num_workers)
    trainer.fit(module, loader, ckpt_path=resume)
    if trainer.is_global_zero:
        save_encoder(module, dataset, run_dir / ENCODER_FILE)
    return run_dir


def resolve_run_dir(config: Config) -> Path:
    """``train.out``, or ``runs/<dataset>-<method>-<UTC time>`` for single-process runs."""
    if config.train.out:
        return Path(config.train.out)
    if config.train.num_nodes > 1 or str(config.train.devices) not in ("1", "auto"):
        raise InputError("multi-process runs need train.out (every process must write to the same directory)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    config.train.out = f"runs/{config.data.name}-{config.method.name}-{stamp}"
    return Path(config.train.out)


def build_trainer(
    config: Config, run_dir: Path, callbacks: Sequence[Callback] = (), resume_step: int | None = None
) -> L.Trainer:
    """The Lightning trainer of a run: checkpoints, CSV + TensorBoard logs, precision, devices.

    ``resume_step``: the global step of the checkpoint the run resumes from; the CSV log keeps the rows
    logged before it.
    """
    # one checkpointer per schedule (Lightning's takes epochs or steps, not both); the epoch one keeps last.ckpt
    schedules = {
        "epoch{epoch:04d}": {"every_n_epochs": config.train.checkpoint_every_n_epochs, "save_last": True}
    }
    if config.train.checkpoint_every_n_steps:
        schedules["step{step:08d}"] = {"every_n_train_steps": config.train.checkpoint_every_n_steps}
    checkpoints = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename=filename,
            auto_insert_metric_name=False,
            save_top_k=-1,
            **schedule,
        )
        for filename, schedule in schedules.items()
    ]
    loggers = [
        ResumableCSVLogger(run_dir, name="logs", version="", resume_step=resume_step),
        TensorBoardLogger(run_dir, name="logs", version="", default_hp_metric=False),
    ]
    return L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        num_nodes=config.train.num_nodes,
        strategy=config.train.strategy,
        precision=config.train.precision,
        callbacks=[*checkpoints, *callbacks],
        logger=loggers,
        log_every_n_steps=config.train.log_every_n_steps,
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )


def save_encoder(module: ContrastiveModule, dataset: ImageDataset, path: Path) -> None:
    """Write the encoder weights with what evaluation needs (plain data only: safe to load)."""
    payload = {
        "format": ENCODER_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in module.encoder.state_dict().items()},
        "feature_dim": module.encoder.feature_dim,
        "class_names": list(dataset.class_names),
        **module.describe(),
    }
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def _checkpoint_step(path: str) -> int:
    """The global step a Lightning checkpoint of a run was saved at."""
    step = load_checkpoint(path, mmap=True).get("global_step")  # the weights are not read
    if not isinstance(step, int):
        raise InputError(
            f"{path}: not a training checkpoint (no global_step); resume from a run's checkpoints/"
        )
    return step


def _resume_checkpoint(config: Config, run_dir: Path) -> str | None:
    resume = config.train.resume
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume == "auto":
        return str(last) if last.exists() else None
    if resume:
        if not Path(resume).is_file():
            raise InputError(f"train.resume: no checkpoint file at {resume}")
        return resume
    if (run_dir / "config.yaml").exists() and rank_zero_only.rank == 0:
        raise InputError(
            f"{run_dir} already holds a run; resume it with train.resume=auto or choose another train.out"
        )
    return None


def _write_run_files(
    run_dir: Path, config: Config, dataset: ImageDataset, rows: np.ndarray, clusters, fresh: bool
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    write_json(
        run_dir / ("environment.json" if fresh else "environment.resumed.json"),
        environment(config.train.seed),
    )
    table = dataset.table.iloc[rows]
    if clusters is not None:
        columns = {"row": rows.tolist(), "label": table["label"].tolist()}
        if "path" in table.columns:
            columns = {"path": table["path"].tolist(), **columns}
        clusters.save(run_dir / "clusters.csv", columns=columns)
        labelled = table["label"].to_numpy() >= 0
        if labelled.any():
            stats = cluster_stats(clusters.ids[labelled], table["label"].to_numpy()[labelled])
            write_json(run_dir / "cluster_stats.json", {**stats.to_dict(), "notes": stats.recommendations()})
    if dataset.skipped:
        skipped = pd.DataFrame({"path": list(dataset.skipped), "reason": list(dataset.skipped.values())})
        atomic_write_with(run_dir / "skipped.csv", lambda tmp: skipped.to_csv(tmp, index=False))
