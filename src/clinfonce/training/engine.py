"""``train(config)``: stage 1, stage 2 and the run directory (:class:`clinfonce.run.RunDir`)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from clinfonce._io import atomic_write_with, load_checkpoint
from clinfonce.clusters import ClusterAssignment, build_for_dataset, cluster_stats
from clinfonce.config import Config
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.loaders import train_loader
from clinfonce.errors import InputError
from clinfonce.models import ENCODER_FORMAT
from clinfonce.run import RunDir
from clinfonce.training.csv_log import ResumableCSVLogger
from clinfonce.training.environment import environment
from clinfonce.training.module import ContrastiveModule


def train(config: Config, callbacks: Sequence[Callback] = (), dataset: ImageDataset | None = None) -> RunDir:
    """Run stage 1 and train the encoder; return the run directory.

    Args:
        config: a resolved configuration (:func:`clinfonce.config.load_config`).
        callbacks: extra Lightning callbacks.
        dataset: an already loaded dataset (else ``config.data`` is loaded).
    """
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    config = with_run_dir(config)
    run = RunDir(config.train.out)
    resume = _resume_checkpoint(config, run)
    resume_step = _checkpoint_step(resume) if resume else None  # fails early on a bad file
    if dataset is None:
        dataset = config.data.load()
    rows = dataset.rows("train")
    if len(rows) == 0:
        raise InputError(f"dataset {dataset.name!r} has no training images")
    clusters = (
        build_for_dataset(config.clusters, dataset, rows) if config.method.name == "clinfonce" else None
    )
    if rank_zero_only.rank == 0:
        _write_run_files(run, config, dataset, rows, clusters, fresh=resume is None)
    ids = np.full(len(dataset), -1, dtype=np.int64)  # rows outside the training split have no cluster
    if clusters is not None:
        ids[rows] = clusters.ids
    module = ContrastiveModule(
        config,
        n_rows=len(dataset),
        n_classes=dataset.n_classes,
        crop_size=config.data.crop_size or dataset.image_size[0],
        mean=dataset.mean,
        std=dataset.std,
        cluster_ids=torch.from_numpy(ids),
    )
    trainer = build_trainer(config, run, callbacks, resume_step)
    loader = train_loader(dataset, rows, config.optim.batch_size, config.train.seed, config.data.num_workers)
    trainer.fit(module, loader, ckpt_path=resume)
    if trainer.is_global_zero:
        save_encoder(module, dataset, run.encoder_path)
    return run


def with_run_dir(config: Config) -> Config:
    """``config`` with ``train.out`` set: as given, or ``runs/<dataset>-<method>-<UTC time>`` for
    single-process runs."""
    if config.train.out:
        return config
    if config.train.num_nodes > 1 or str(config.train.devices) not in ("1", "auto"):
        raise InputError("multi-process runs need train.out (every process must write to the same directory)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = f"runs/{config.data.name}-{config.method.name}-{stamp}"
    return dataclasses.replace(config, train=dataclasses.replace(config.train, out=out))


def build_trainer(
    config: Config, run: RunDir, callbacks: Sequence[Callback] = (), resume_step: int | None = None
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
            dirpath=run.checkpoints_dir,
            filename=filename,
            auto_insert_metric_name=False,
            save_top_k=-1,
            **schedule,
        )
        for filename, schedule in schedules.items()
    ]
    loggers = [
        ResumableCSVLogger(run.path, name=RunDir.LOGS, version="", resume_step=resume_step),
        TensorBoardLogger(run.path, name=RunDir.LOGS, version="", default_hp_metric=False),
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
        default_root_dir=run.path,
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


def _resume_checkpoint(config: Config, run: RunDir) -> str | None:
    resume = config.train.resume
    if resume == "auto":
        return str(run.last_checkpoint) if run.last_checkpoint.exists() else None
    if resume:
        if not Path(resume).is_file():
            raise InputError(f"train.resume: no checkpoint file at {resume}")
        return resume
    if run.exists() and rank_zero_only.rank == 0:
        raise InputError(
            f"{run.path} already holds a run; resume it with train.resume=auto or choose another train.out"
        )
    return None


def _write_run_files(
    run: RunDir,
    config: Config,
    dataset: ImageDataset,
    rows: np.ndarray,
    clusters: ClusterAssignment | None,
    fresh: bool,
) -> None:
    run.write_config(config)
    run.write_environment(environment(config.train.seed), resumed=not fresh)
    table = dataset.table.iloc[rows]
    if clusters is not None:
        labels = table["label"].to_numpy()
        columns = {"row": rows.tolist(), "label": labels.tolist()}
        if "path" in table.columns:
            columns = {"path": table["path"].tolist(), **columns}
        labelled = labels >= 0
        stats = cluster_stats(clusters.ids[labelled], labels[labelled]) if labelled.any() else None
        run.write_clusters(clusters, columns, stats)
    run.write_skipped(dataset.skipped)
