"""``train(config)``: stage 1, stage 2 and the run directory; returns the :class:`~clinfonce.run.Run`."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from lightning.pytorch.callbacks import Callback, OnExceptionCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from clinfonce._io import load_checkpoint
from clinfonce.clusters import (
    ClusterAssignment,
    ClusterStats,
    attribute_targets,
    build_for_dataset,
    labelled_cluster_stats,
    tag_vectors_for_dataset,
)
from clinfonce.clusters.tags import TagPositives
from clinfonce.config import Config, TrainConfig, hyperparameters
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.loaders import train_loader
from clinfonce.errors import InputError, RunStopped
from clinfonce.methods import METHODS
from clinfonce.records import CheckpointMeta, TrainingSummary
from clinfonce.run import RESUMABLE_KEYS, Run, RunDir, config_differences
from clinfonce.training.checkpoints import AtomicCheckpointIO, checkpointers
from clinfonce.training.csv_log import ResumableCSVLogger
from clinfonce.training.environment import environment
from clinfonce.training.guards import NonFiniteGuard
from clinfonce.training.module import ContrastiveModule
from clinfonce.training.monitor import knn_monitor
from clinfonce.training.recluster import Recluster
from clinfonce.typed import to_mapping

log = logging.getLogger(__name__)


def train(
    config: Config,
    callbacks: Sequence[Callback] = (),
    dataset: ImageDataset | None = None,
    overwrite: bool = False,
    start: Start | None = None,
) -> Run:
    """Run stage 1 and train the encoder; return the run, as written to its directory.

    A run never mixes with another: training into a directory that holds a run needs ``train.resume``
    (with a config that differs only in :data:`~clinfonce.run.RESUMABLE_KEYS`) or ``overwrite``; a folder
    that is not empty and not a run is refused. The start is decided before the dataset is read (and
    checked again under the directory's lock, which this process holds while it writes the run).

    Args:
        config: a resolved configuration (:func:`clinfonce.config.load_config`).
        callbacks: extra Lightning callbacks.
        dataset: the dataset ``config.data`` loads, already loaded (else it is loaded here); one loaded with
            other settings is refused, so the run's ``config.yaml`` always describes its data.
        overwrite: replace a run already in ``train.out``.
        start: the start :func:`decide_start` decided for this config (e.g. before loading the dataset);
            decided here when None.

    Raises:
        InputError: the run directory, the checkpoint or the config does not allow this start; ``dataset``
            is not what ``config.data`` describes.
        RunStopped: interrupted (Ctrl-C: a checkpoint is saved first), or a non-finite step.
    """
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    config = with_run_dir(config)
    run = RunDir(config.train.out)
    resume = (start if start is not None else decide_start(config, overwrite)).resume
    if dataset is None:
        dataset = config.data.load()
    else:
        config.data.check_describes(dataset)
    rows = dataset.rows("train")
    if len(rows) == 0:
        raise InputError(f"dataset {dataset.name!r} has no training images")
    method = METHODS[config.method.name]
    clusters, targets, positives = None, None, None
    if config.method.positives == "tags":
        started = time.perf_counter()
        positives = TagPositives.of(
            tag_vectors_for_dataset(config.clusters, dataset, rows), config.clusters.tag_weighting
        )
        log.info(
            "stage 1: soft positives from %d tags of %d training images (%s, %.1f s)",
            positives.provenance["n_tags"],
            len(rows),
            config.clusters.tag_weighting,
            time.perf_counter() - started,
        )
    elif method.needs_stage1 and not config.clusters.reclusters:
        started = time.perf_counter()
        log.info("stage 1: %s clusters of %d training images ...", config.clusters.source, len(rows))
        clusters = build_for_dataset(config.clusters, dataset, rows)
        log.info(
            "stage 1: %d clusters (%.1f s)",
            clusters.n_clusters if clusters else 0,
            time.perf_counter() - started,
        )
    if method.uses == "attributes":
        targets, names = attribute_targets(config.clusters, dataset, rows)
        log.info("%s learns %d attribute(s): %s", method.name, len(names), ", ".join(names))
    ids = np.full(len(dataset), -1, dtype=np.int64)  # rows outside the training split have no cluster
    if clusters is not None:
        ids[rows] = clusters.ids
    module = ContrastiveModule(
        config,
        n_rows=len(dataset),
        n_classes=dataset.n_classes,
        crop_size=config.data.crop_size or dataset.image_size[0],
        **input_normalisation(config, dataset),
        image_input=dataset.image_input,
        cluster_ids=torch.from_numpy(ids),
        n_clusters=clusters.n_clusters if clusters is not None else None,
        attribute_targets=None if targets is None else _by_row(targets, rows, len(dataset)),
        tag_vectors=None if positives is None else _sparse_by_row(positives.vectors, rows, len(dataset)),
        keep_projections=config.clusters.reclusters and config.clusters.recluster_features == "training",
        start_from_weights=resume is None,  # a resume takes every weight from its checkpoint
    )
    module.announce_epochs = not shows_progress_bar(config)  # one line per epoch instead of a bar
    precision = resolved_precision(config.train)
    guard = NonFiniteGuard(run, config.train.max_bad_steps, precision != "16-mixed")
    if method.needs_stage1 and config.clusters.reclusters:
        callbacks = [Recluster(config.clusters, dataset, rows, run, config.eval.batch_size), *callbacks]
    monitor = knn_monitor(dataset, config.eval.knn_every, config.eval.knn_k[0], config.eval.batch_size)
    extra = [guard, *callbacks, *([monitor] if monitor is not None else [])]
    trainer = build_trainer(config, run, extra, resume.step if resume else None)
    if resume is not None and resume.world_size not in (None, trainer.world_size):
        raise InputError(
            f"{resume.path} was trained by {resume.world_size} process(es), this start has "
            f"{trainer.world_size}: resume with as many (train.devices x train.num_nodes), since the global "
            "batch and the steps of an epoch depend on it"
        )
    # before anything is written: a training split smaller than one global batch is refused here
    loader = train_loader(
        dataset,
        rows,
        config.optim.batch_size,
        config.train.seed,
        config.data.num_workers,
        rank=trainer.global_rank,
        world_size=trainer.world_size,
    )
    writer, stats = trainer.is_global_zero, None
    with run.lock() if writer else contextlib.nullcontext():
        if writer:
            resume = check_start(config, overwrite)  # again under the lock: another run may have started
            if overwrite and resume is None:
                _clear(run)
            stats = _write_run_files(run, config, dataset, rows, clusters, trainer, fresh=resume is None)
            if positives is not None:
                run.write_positives(positives.provenance, len(rows))
            if config.train.resume and resume is None:
                log.info("no checkpoint in %s yet: training starts from the beginning", run.path)
        for logger in trainer.loggers:  # the resolved config, flat: hparams.yaml and TensorBoard's HPARAMS
            logger.log_hyperparams(hyperparameters(config))
        if resume is not None:
            loader.sampler.resume_within(resume.epoch, resume.batches_done(len(loader)))
        if method.trains:
            log.info(
                "training %s for %d epochs (%d steps each) into %s%s",
                config.method.name,
                config.train.epochs,
                len(loader),
                run.path,
                f", resuming at step {resume.step}" if resume else "",
            )
        else:
            log.info("%s does not train: the encoder is its starting weights (%s)", method.name, module.start)
        try:
            if method.trains:  # else the starting weights are the run's encoder
                trainer.fit(module, loader, ckpt_path=None if resume is None else str(resume.path))
        except SystemExit:  # Lightning's answer to Ctrl-C, after the on_exception hooks saved a checkpoint
            if not trainer.interrupted:
                raise
            raise RunStopped(
                f"interrupted at step {trainer.global_step}; a checkpoint is saved in {run.checkpoints_dir}; "
                f"resume with: clinfonce train --config {run.config_path} --resume",
                exit_status=130,
            ) from None
        summary = TrainingSummary(
            epoch_loss=dict(module.epoch_losses),
            bad_steps=list(guard.bad_steps),
            train_seconds=round(module.train_seconds(), 3) if method.trains else 0.0,
            world_size=trainer.world_size,
            global_batch=config.optim.batch_size * trainer.world_size,
            lr=module.lr,
            precision=str(trainer.precision),
            samples_per_epoch=[module.epoch_samples[e] for e in sorted(module.epoch_samples)],
        )
        encoder = module.trained_encoder(dataset.class_names)
        trained_clusters = module.cluster_ids.cpu().numpy()
        if not (trained_clusters >= 0).any():
            trained_clusters = None
        elif clusters is None:  # K-means during training: the statistics of its last clustering
            stats = labelled_cluster_stats(trained_clusters[rows], dataset.table["label"].to_numpy()[rows])
        if trainer.is_global_zero:
            run.write_training(summary)
            if clusters is None and stats is not None:
                run.write_cluster_stats(stats)
            encoder.save(run.encoder_path)
    return Run(
        dir=run.path,
        config=config,
        encoder=encoder,
        clusters=clusters,
        cluster_stats=stats,
        trained_clusters=trained_clusters,
        positives=None if positives is None else positives.provenance,
        training=summary,
        skipped=dict(dataset.skipped),
    )


@dataclasses.dataclass(frozen=True)
class Start:
    """How a run starts: from scratch (``resume`` None) or from a checkpoint."""

    resume: _Resume | None


def decide_start(config: Config, overwrite: bool = False) -> Start:
    """The start of the run ``config`` describes. Only global rank 0 checks that it is allowed
    (:func:`check_start`; it later holds the lock and writes the run's files); every process finds the same
    checkpoint, since none is written before training starts."""
    config = with_run_dir(config)
    return Start(check_start(config, overwrite) if launched_as_rank_zero() else resume_point(config))


@dataclasses.dataclass(frozen=True)
class _Resume:
    """Where a run continues: a checkpoint and the position it was saved at."""

    path: Path
    step: int
    epoch: int
    #: processes that trained it (None: a checkpoint from before this was recorded)
    world_size: int | None = None

    def batches_done(self, batches_per_epoch: int) -> int:
        """Batches of the checkpoint's epoch already trained (0 for a checkpoint from an epoch's end)."""
        done = self.step - self.epoch * batches_per_epoch
        return done if 0 < done < batches_per_epoch else 0


def check_start(config: Config, overwrite: bool = False) -> _Resume | None:
    """Check that the run in ``train.out`` may start as asked, reading only (nothing is loaded but the
    run's config and a checkpoint's plain data); the checkpoint to resume from, or None."""
    run = RunDir(with_run_dir(config).train.out)
    if not config.train.resume:
        if run.exists() and not overwrite:
            raise InputError(
                f"{run.path} already holds a run: continue it with --resume (train.resume=auto), replace it "
                "with --overwrite, or choose another train.out"
            )
        if not run.exists() and not run.is_free():
            raise InputError(
                f"{run.path} is not empty and holds no run; choose a new or empty folder for train.out"
            )
        return None
    if overwrite:
        raise InputError("--resume and --overwrite contradict each other: choose one")
    if run.exists():
        different = config_differences(run.config(), config)
        if different:
            raise InputError(
                f"cannot resume {run.path}: the config differs from the run's in {', '.join(different)} "
                f"(only {', '.join(RESUMABLE_KEYS)} may change; start a new run with another train.out)"
            )
    elif not run.is_free():
        raise InputError(f"{run.path} is not empty and holds no run: there is nothing to resume")
    resume = resume_point(config)
    if resume is not None:
        saved = CheckpointMeta.read(load_checkpoint(resume.path, mmap=True), str(resume.path)).encoder
        if saved is not None:  # a checkpoint from elsewhere: its weights must fit this config's model
            model, theirs = to_mapping(config.model), to_mapping(saved.model)
            different = sorted(f"model.{k}" for k in model if theirs[k] != model[k])
            if different:
                raise InputError(
                    f"{resume.path}: saved with other {', '.join(different)} than this config; it cannot "
                    "resume it"
                )
    return resume


def launched_as_rank_zero() -> bool:
    """Whether this process will be global rank 0, as its launcher's environment says before a trainer
    exists: torchrun's ``RANK``, srun's ``SLURM_PROCID``, or the ``LOCAL_RANK`` and ``NODE_RANK`` Lightning
    gives the processes it starts (none of them: a single process, rank 0)."""
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def resume_point(config: Config) -> _Resume | None:
    """The checkpoint ``train.resume`` names (``auto``: the run directory's newest) and its position; None
    without ``train.resume`` or when ``auto`` finds none. Refuses nothing else (:func:`check_start` does)."""
    resume = config.train.resume
    if not resume:
        return None
    run = RunDir(with_run_dir(config).train.out)
    if resume == "auto":
        path = run.newest_checkpoint()
        if path is None:
            return None
    else:
        path = Path(resume)
        if not path.is_file():
            raise InputError(f"train.resume: no checkpoint file at {resume}")
    payload = load_checkpoint(path, mmap=True)  # the weights are not read
    step, epoch = payload.get("global_step"), payload.get("epoch")
    if not isinstance(step, int) or not isinstance(epoch, int):
        raise InputError(
            f"{path}: not a training checkpoint (no global_step); resume from a run's checkpoints/"
        )
    return _Resume(path, step, epoch, CheckpointMeta.read(payload, str(path)).world_size)


def _clear(run: RunDir) -> None:
    """Delete the run in ``run`` (everything but the lock this process holds)."""
    for entry in run.path.iterdir():
        if entry.name == RunDir.LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def with_run_dir(config: Config) -> Config:
    """``config`` with ``train.out`` set: as given, or ``runs/<dataset>-<method>-<UTC time>`` for
    single-process runs."""
    if config.train.out:  # absolute, so `--config RUN/config.yaml --resume` works from any folder
        out = str(Path(config.train.out).absolute())
        return (
            config
            if out == config.train.out
            else dataclasses.replace(config, train=dataclasses.replace(config.train, out=out))
        )
    if config.train.num_nodes > 1 or str(config.train.devices) != "1":  # "auto" and -1 may be several too
        raise InputError(
            "runs on several devices need train.out (every process must write to the same directory)"
        )
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(f"runs/{config.data.name}-{config.method.name}-{stamp}").absolute()
    return dataclasses.replace(config, train=dataclasses.replace(config.train, out=str(out)))


def resolved_precision(train: TrainConfig) -> str:
    """``train.precision``, where ``auto`` means ``bf16-mixed`` when training on CUDA GPUs with native
    bfloat16 (Ampere and later; ``train.accelerator`` gpu/cuda, or auto with a GPU present) and ``32-true``
    otherwise.

    Raises:
        InputError: ``auto`` with a strategy that forks the training processes (``ddp_fork``,
            ``ddp_notebook``): asking the GPU would initialise CUDA before the fork, which CUDA forbids.
    """
    if train.precision != "auto":
        return train.precision
    on_cuda = train.accelerator in ("gpu", "cuda") or (
        train.accelerator == "auto" and torch.cuda.is_available()
    )
    if not (on_cuda and torch.cuda.is_available()):
        return "32-true"
    if "fork" in train.strategy or "notebook" in train.strategy:
        raise InputError(
            f"train.precision=auto cannot be resolved with train.strategy={train.strategy} (it would initialise "
            "CUDA before the processes fork): set train.precision, e.g. bf16-mixed or 16-mixed"
        )
    return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "32-true"


def shows_progress_bar(config: Config) -> bool:
    """``train.progress_bar``, where None means: when the output is a terminal."""
    return sys.stderr.isatty() if config.train.progress_bar is None else config.train.progress_bar


def build_trainer(
    config: Config, run: RunDir, callbacks: Sequence[Callback] = (), resume_step: int | None = None
) -> L.Trainer:
    """The Lightning trainer of a run: atomic checkpoints (the newest ``train.keep_checkpoints`` kept, and
    one saved on Ctrl-C), CSV + TensorBoard logs, precision, devices.

    ``resume_step``: the global step of the checkpoint the run resumes from; the CSV log keeps the rows
    logged before it.
    """
    train = config.train
    progress_bar = shows_progress_bar(config)
    saving = checkpointers(
        run.checkpoints_dir,
        train.checkpoint_every_n_epochs,
        train.checkpoint_every_n_steps,
        train.keep_checkpoints,
    )
    on_interrupt = OnExceptionCheckpoint(
        run.checkpoints_dir, filename=RunDir.LAST_CHECKPOINT[: -len(".ckpt")]
    )
    loggers = [
        ResumableCSVLogger(run.path, name=RunDir.LOGS, version="", resume_step=resume_step),
        TensorBoardLogger(run.path, name=RunDir.LOGS, version="", default_hp_metric=False),
    ]
    return L.Trainer(
        max_epochs=train.epochs,
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        use_distributed_sampler=False,  # the train loader shards itself (EpochSeededSampler)
        precision=resolved_precision(train),
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            *saving,
            _OnInterrupt(on_interrupt),
            *callbacks,
        ],
        logger=loggers,
        log_every_n_steps=train.log_every_n_steps,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=run.path,
    )


class _OnInterrupt(Callback):
    """Save ``last.ckpt`` when the user interrupts (Ctrl-C), and on no other exception: a run that failed
    keeps the checkpoints it had, so a resume never continues from a broken state."""

    def __init__(self, saver: OnExceptionCheckpoint) -> None:
        self.saver = saver

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.saver.on_exception(trainer, module, exception)


def input_normalisation(config: Config, dataset: ImageDataset) -> dict[str, tuple[float, ...]]:
    """``mean`` and ``std`` of the views: those the pretrained weights were trained with, else the
    dataset's own."""
    if config.model.pretrained is not None:
        from clinfonce.pretrained import pretrained

        entry = pretrained(config.model.pretrained)
        return {"mean": entry.mean, "std": entry.std}
    return {"mean": tuple(dataset.mean), "std": tuple(dataset.std)}


def _by_row(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """``values`` ``[len(rows), ...]`` placed at ``rows`` of a zero array ``[n_rows, ...]``."""
    out = np.zeros((n_rows, *values.shape[1:]), dtype=values.dtype)
    out[rows] = values
    return out


def _sparse_by_row(matrix: sp.csr_array, rows: np.ndarray, n_rows: int) -> sp.csr_array:
    """``matrix`` ``[len(rows), T]`` placed at ``rows`` of an ``[n_rows, T]`` matrix (other rows zero)."""
    placed = sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows))
    )
    return sp.csr_array(placed @ matrix)


def _write_run_files(
    run: RunDir,
    config: Config,
    dataset: ImageDataset,
    rows: np.ndarray,
    clusters: ClusterAssignment | None,
    trainer: L.Trainer,
    fresh: bool,
) -> ClusterStats | None:
    """Write the run's config, environment, clusters and skipped files; returns the clusters' statistics
    against the training labels (None without clusters or labels)."""
    run.write_config(config)
    processes = {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "strategy": type(trainer.strategy).__name__,
        "precision": trainer.precision,
    }
    run.write_environment(environment(config.train.seed, processes), resumed=not fresh)
    table = dataset.table.iloc[rows]
    stats = None
    if clusters is not None:
        labels = table["label"].to_numpy()
        columns = {"row": rows.tolist(), "label": labels.tolist()}
        if "path" in table.columns:
            columns = {"path": table["path"].tolist(), **columns}
        run.write_clusters(clusters, columns)
        stats = labelled_cluster_stats(clusters.ids, labels)
        if stats is not None:
            run.write_cluster_stats(stats)
    run.write_skipped(dataset.skipped)
    return stats
