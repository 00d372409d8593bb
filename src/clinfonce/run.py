"""The run directory: every file name of a run, read and written typed, in one place.

A run directory holds everything needed to understand and repeat a run::

    config.yaml              the resolved configuration (written once; read back as a Config)
    environment.json         seed, command, versions, machine (environment.resumed.json after a resume)
    clusters.csv/.json       the stage-1 cluster of every training image and its provenance (soft positives
                             from tags: clusters.json alone, with the tags used)
    cluster_stats.json       H(Z), I(Z;T), ... of those clusters (K-means in training: its last) against
                             the training labels
    skipped.csv              images left out by data.skip_bad (path, reason), when any
    checkpoints/             Lightning checkpoints every N epochs and last.ckpt (for resume)
    logs/                    metrics.csv and TensorBoard events
    encoder.pt               the trained encoder (plain tensors: safe to load)
    metrics.json, report.md  written by the evaluation

Training writes through a :class:`RunDir`; evaluation and reports read through one, so no other module
knows a file name of a run. :class:`Run` is what a run knows about itself: training hands one on (nothing
it just wrote is read back), :meth:`Run.read` reads one from a directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from clinfonce._io import (
    TEMP_MARKER,
    atomic_open,
    atomic_write_with,
    load_checkpoint,
    remove_stale_temporaries,
    write_json,
)
from clinfonce.clusters import ClusterAssignment, ClusterStats
from clinfonce.config import Config, save_config
from clinfonce.encoder import Encoder
from clinfonce.errors import InputError
from clinfonce.records import TrainingSummary
from clinfonce.typed import from_mapping

#: The training-loss column of the CSV log, one value per epoch.
EPOCH_LOSS_KEY = "train/loss_epoch"
#: Config keys that may differ when a run is resumed: they change how long it trains, how it reports and
#: how fast it reads data, not what one training step computes.
RESUMABLE_KEYS = (
    "train.out",  # the folder is the run, however its path is written
    "train.epochs",
    "train.resume",
    "train.progress_bar",
    "train.log_every_n_steps",
    "train.keep_checkpoints",
    "data.num_workers",
    "data.options.workers",
    "eval.",
)
#: Paths of this process's held run-directory locks (a lock is taken once per process).
_HELD: dict[Path, int] = {}


class RunDir:
    """One run's directory. Creating the object touches nothing on disk."""

    LOCK = ".lock"
    CONFIG = "config.yaml"
    ENVIRONMENT = "environment.json"
    ENVIRONMENT_RESUMED = "environment.resumed.json"
    CLUSTERS = "clusters.csv"
    CLUSTER_STATS = "cluster_stats.json"
    TRAINING = "training.json"
    RECLUSTERS = "reclusters.csv"
    SKIPPED = "skipped.csv"
    CHECKPOINTS = "checkpoints"
    LAST_CHECKPOINT = "last.ckpt"
    DEBUG_PREFIX = "debug-"
    LOGS = "logs"
    METRICS_CSV = "metrics.csv"
    ENCODER = "encoder.pt"
    METRICS = "metrics.json"
    REPORT = "report.md"
    REPORT_HTML = "report.html"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def containing(cls, path: str | Path) -> RunDir | None:
        """The run that ``path`` (a run directory, its ``encoder.pt``, or one of its checkpoints) belongs to:
        the nearest enclosing directory with a ``config.yaml``; None when there is none."""
        path = Path(path).absolute()
        for folder in [path, *path.parents][:3]:
            if (folder / cls.CONFIG).is_file():
                return cls(folder)
        return None

    # ----------------------------------------------------------------------------------- file locations
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / self.LAST_CHECKPOINT

    @property
    def logs_dir(self) -> Path:
        return self.path / self.LOGS

    @property
    def encoder_path(self) -> Path:
        return self.path / self.ENCODER

    @property
    def clusters_path(self) -> Path:
        return self.path / self.CLUSTERS

    def encoder_file(self) -> Path:
        """The run's final ``encoder.pt``, else its newest ``last.ckpt``; :class:`InputError` when it has
        neither."""
        found = next((c for c in (self.encoder_path, self.last_checkpoint) if c.is_file()), None)
        if found is None:
            raise InputError(f"{self.path}: no {self.ENCODER} or checkpoints in this run directory")
        return found

    def exists(self) -> bool:
        """Whether a run was started here (its config is written first)."""
        return self.config_path.is_file()

    def is_free(self) -> bool:
        """Whether a new run may start here: the folder is absent or empty (but for the lock and temporary
        files a killed run can leave before it wrote its config)."""
        if not self.path.exists():
            return True
        return self.path.is_dir() and all(
            entry.name == self.LOCK or TEMP_MARKER in entry.name for entry in self.path.iterdir()
        )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for this process while the block runs; another process that tries is
        refused at once with an :class:`InputError` (the lock dies with its process, so a killed run never
        leaves the directory locked). Stale temporary files of killed writers are cleared on entry."""
        key = self.path.absolute()
        if key in _HELD:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(
                f"{self.path} is in use by another clinfonce process (pid {holder}); wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = fd
        try:
            for folder in (self.path, self.checkpoints_dir, self.logs_dir):
                remove_stale_temporaries(folder)
            yield
        finally:  # the lock file stays: deleting it would let a waiting and a new process both lock
            del _HELD[key]
            os.close(fd)

    # ------------------------------------------------------------------------------------- checkpoints
    def newest_checkpoint(self) -> Path | None:
        """The loadable training checkpoint with the highest global step (``last.ckpt`` on a tie); debug
        checkpoints are never chosen. Unreadable files are passed over (a kill cannot leave one: checkpoints
        are written atomically, but a disk can still corrupt them)."""
        best: tuple[int, int, Path] | None = None
        for path in sorted(self.checkpoints_dir.glob("*.ckpt")) if self.checkpoints_dir.is_dir() else []:
            if path.name.startswith(self.DEBUG_PREFIX) or TEMP_MARKER in path.name:
                continue
            step = checkpoint_step(path)
            if step is None:
                continue
            candidate = (step, path.name == self.LAST_CHECKPOINT, path)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        return None if best is None else best[2]

    def debug_checkpoint(self, step: int) -> Path:
        """Where the checkpoint of a step that went non-finite is written."""
        return self.checkpoints_dir / f"{self.DEBUG_PREFIX}step{step:08d}.ckpt"

    # ------------------------------------------------------------------------------ K-means re-clustering
    def append_recluster(self, row: Mapping[str, Any]) -> None:
        """One more row of ``reclusters.csv`` (the file is rewritten whole, atomically)."""
        earlier = self.reclusters()
        if len(earlier):  # a resumed run redoes the clusterings after its checkpoint: keep one per epoch
            earlier = earlier[earlier["epoch"] < row["epoch"]]
        frame = pd.concat([earlier, pd.DataFrame([dict(row)])], ignore_index=True)
        atomic_write_with(self.path / self.RECLUSTERS, lambda tmp: frame.to_csv(tmp, index=False))

    def reclusters(self) -> pd.DataFrame:
        """One row per K-means re-clustering of a run (empty when it had none)."""
        path = self.path / self.RECLUSTERS
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    # -------------------------------------------------------------------------------- training summary
    def write_training(self, summary: TrainingSummary) -> None:
        """``training.json``: what the trainer reports besides the weights."""
        write_json(self.path / self.TRAINING, summary.to_dict())

    def training(self) -> TrainingSummary | None:
        """The run's training summary; None before training finished."""
        path = self.path / self.TRAINING
        return TrainingSummary.from_dict(json.loads(path.read_text()), str(path)) if path.is_file() else None

    # ------------------------------------------------------------------------------------------ config
    def write_config(self, config: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.config_path)

    def config(self) -> Config:
        """The run's resolved config, typed."""
        if not self.config_path.is_file():
            raise InputError(f"{self.path}: not a run directory (no {self.CONFIG})")
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise InputError(f"{self.config_path}: not valid YAML: {' '.join(str(error).split())}") from None
        return from_mapping(Config, data, str(self.config_path))

    # ------------------------------------------------------------------------------------- environment
    def write_environment(self, info: Mapping[str, Any], resumed: bool = False) -> None:
        write_json(self.path / (self.ENVIRONMENT_RESUMED if resumed else self.ENVIRONMENT), dict(info))

    # ---------------------------------------------------------------------------------------- stage 1
    def write_clusters(self, clusters: ClusterAssignment, columns: Mapping[str, Sequence[Any]]) -> None:
        """The stage-1 assignment of the training rows (CSV + provenance JSON)."""
        clusters.save(self.clusters_path, columns=columns)

    def write_cluster_stats(self, stats: ClusterStats) -> None:
        """The statistics of the clusters the run trained on (for K-means during training: its last
        clustering) against the training labels."""
        write_json(self.path / self.CLUSTER_STATS, stats.to_dict())

    def clusters(self) -> ClusterAssignment | None:
        return ClusterAssignment.load(self.clusters_path) if self.clusters_path.is_file() else None

    def write_positives(self, provenance: Mapping[str, Any], n: int) -> None:
        """Stage 1 of soft positives from tags (no clusters): how the tag vectors of the ``n`` training
        images were made and the tags used, where a clustering's provenance goes."""
        write_json(
            self.clusters_path.with_suffix(".json"),
            {"n": n, "positives": "tags", "provenance": dict(provenance)},
        )

    def positives(self) -> dict[str, Any] | None:
        """The provenance :meth:`write_positives` wrote, or None (a run on clusters, or none)."""
        meta = ClusterAssignment.load_metadata(self.clusters_path)
        return meta["provenance"] if meta.get("positives") == "tags" else None

    def trained_clusters(self) -> np.ndarray | None:
        """``int64 [n]``: the cluster each table row trained with (-1: none; rows past the end: none), from
        the stage-1 clusters, or for K-means during training the last clustering (kept in the final
        checkpoint); None when the run trained on no clusters."""
        if self.clusters_path.is_file():
            frame = pd.read_csv(self.clusters_path, usecols=["row", "cluster"])
            rows = frame["row"].to_numpy()
            ids = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
            ids[rows] = frame["cluster"].to_numpy()
            return ids
        if self.last_checkpoint.is_file():
            buffer = load_checkpoint(self.last_checkpoint, mmap=True).get("state_dict", {}).get("cluster_ids")
            if buffer is not None and bool((buffer >= 0).any()):
                return buffer.numpy().astype(np.int64)
        return None

    def cluster_stats(self) -> ClusterStats | None:
        path = self.path / self.CLUSTER_STATS
        return ClusterStats(**json.loads(path.read_text())) if path.is_file() else None

    # ----------------------------------------------------------------------------------- skipped files
    def write_skipped(self, skipped: Mapping[str, str]) -> None:
        """Images left out of the run (path -> reason); nothing is written when there are none."""
        if skipped:
            frame = pd.DataFrame({"path": list(skipped), "reason": list(skipped.values())})
            atomic_write_with(self.path / self.SKIPPED, lambda tmp: frame.to_csv(tmp, index=False))

    def skipped(self) -> dict[str, str]:
        path = self.path / self.SKIPPED
        if not path.is_file():
            return {}
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return dict(zip(frame["path"], frame["reason"], strict=True))

    # ------------------------------------------------------------------------------------------- logs
    def training_curve(self) -> pd.DataFrame:
        """``epoch, train_loss``: the mean training loss of every finished epoch (empty without a log).

        A finished run's curve is the trainer's own record (exact over interruptions and resumes); while a
        run trains, it is read from the CSV log."""
        summary = self.training()
        return loss_curve(summary.epoch_loss) if summary and summary.epoch_loss else self.logged_curve()

    def logged_curve(self) -> pd.DataFrame:
        """``epoch, train_loss`` from the CSV log (empty without one)."""
        path = self.logs_dir / self.METRICS_CSV
        if not path.is_file():
            return pd.DataFrame(columns=["epoch", "train_loss"])
        log = pd.read_csv(path)
        if EPOCH_LOSS_KEY not in log.columns:
            return pd.DataFrame(columns=["epoch", "train_loss"])
        curve = log.dropna(subset=[EPOCH_LOSS_KEY])[["epoch", EPOCH_LOSS_KEY]]
        return curve.rename(columns={EPOCH_LOSS_KEY: "train_loss"}).reset_index(drop=True)

    # ------------------------------------------------------------------------------------- evaluation
    def write_evaluation(
        self, metrics: Mapping[str, Any], report: str, out_dir: str | Path | None = None
    ) -> Path:
        """``metrics.json``, ``report.md`` and its self-contained twin ``report.html`` (images embedded) into
        ``out_dir`` (default: the run); returns the markdown report's path."""
        from clinfonce.evaluation.report import markdown_to_html

        out = Path(out_dir) if out_dir is not None else self.path
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / self.METRICS, dict(metrics))
        with atomic_open(out / self.REPORT, "w", encoding="utf-8") as handle:
            handle.write(report)
        page = markdown_to_html(report, out, f"clinfonce: {self.path.name}")
        with atomic_open(out / self.REPORT_HTML, "w", encoding="utf-8") as handle:
            handle.write(page)
        return out / self.REPORT

    def metrics(self) -> dict[str, Any] | None:
        path = self.path / self.METRICS
        return json.loads(path.read_text()) if path.is_file() else None


@dataclasses.dataclass(frozen=True)
class Run:
    """A run: its directory and what it recorded. Training hands one on; :meth:`read` reads one back.

    Attributes:
        dir: the run directory (:attr:`files` names its files).
        config: the resolved config it was trained with.
        encoder: the final encoder (``encoder.pt``); None until training finished.
        clusters: the stage-1 clusters of the training images (None without fixed clusters).
        cluster_stats: H(Z), I(Z;T), ... of the clusters it trained on (K-means during training: the last
            clustering) against the training labels.
        trained_clusters: ``int64 [n]`` the cluster each table row trained with (-1: none), or None.
        positives: with soft positives from tags (``method.positives: tags``), how the tag vectors were
            made and the tags used (a provenance), else None.
        training: the training summary (``training.json``); None until training finished.
        skipped: images left out as unreadable (path -> reason).
        metrics: the evaluation (``linear_top1``, ... in percent); None when not evaluated.
    """

    dir: Path
    config: Config
    encoder: Encoder | None
    clusters: ClusterAssignment | None
    cluster_stats: ClusterStats | None
    trained_clusters: np.ndarray | None
    training: TrainingSummary | None
    skipped: dict[str, str]
    metrics: dict[str, Any] | None = None
    positives: dict[str, Any] | None = None

    @property
    def files(self) -> RunDir:
        """The run's directory and its file names."""
        return RunDir(self.dir)

    def row_clusters(self, n_rows: int) -> np.ndarray:
        """``int64 [n_rows]``: :attr:`trained_clusters` for a table of ``n_rows`` (-1 where none)."""
        ids = np.full(n_rows, -1, dtype=np.int64)
        if self.trained_clusters is not None:
            n = min(n_rows, len(self.trained_clusters))
            ids[:n] = self.trained_clusters[:n]
        return ids

    def curve(self) -> pd.DataFrame:
        """``epoch, train_loss`` of every finished epoch (see :meth:`RunDir.training_curve`)."""
        if self.training is not None and self.training.epoch_loss:
            return loss_curve(self.training.epoch_loss)
        return self.files.logged_curve()

    @classmethod
    def read(cls, path: str | Path) -> Run:
        """The run in directory ``path``; :class:`InputError` when it holds none."""
        files = RunDir(path)
        return cls(
            dir=files.path,
            config=files.config(),
            encoder=Encoder.load(files.encoder_path) if files.encoder_path.is_file() else None,
            clusters=files.clusters(),
            cluster_stats=files.cluster_stats(),
            trained_clusters=files.trained_clusters(),
            training=files.training(),
            skipped=files.skipped(),
            metrics=files.metrics(),
            positives=files.positives(),
        )


def loss_curve(epoch_loss: Mapping[int, float]) -> pd.DataFrame:
    """``epoch, train_loss`` of a training summary's ``epoch_loss``, by epoch."""
    epochs = sorted(epoch_loss)
    return pd.DataFrame(
        {"epoch": [int(e) for e in epochs], "train_loss": [float(epoch_loss[e]) for e in epochs]}
    )


def checkpoint_step(path: str | Path) -> int | None:
    """The global step a Lightning checkpoint was saved at, or None when the file is not a loadable
    training checkpoint. Only the plain data is read (tensors are memory-mapped)."""
    try:
        step = load_checkpoint(path, mmap=True).get("global_step")
    except (InputError, OSError):
        return None
    return step if isinstance(step, int) else None


def config_differences(old: Config, new: Config, allowed: Sequence[str] = RESUMABLE_KEYS) -> list[str]:
    """Dotted keys whose values differ between two configs, except those ``allowed`` (a key, or a prefix
    ending in ``.``) and the model settings neither config's backbone reads."""
    from clinfonce.models import ignored_settings

    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    unread = ignored_settings(old.model.backbone) & ignored_settings(new.model.backbone)
    allowed = [*allowed, *(f"model.{setting}" for setting in sorted(unread))]
    keys = sorted(set(flat_old) | set(flat_new))
    return [
        key
        for key in keys
        if flat_old.get(key) != flat_new.get(key)
        and not any(key == a or (a.endswith(".") and key.startswith(a)) for a in allowed)
    ]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
