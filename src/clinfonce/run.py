"""The run directory: every file name of a run, read and written typed, in one place.

A run directory holds everything needed to understand and repeat a run::

    config.yaml              the resolved configuration (written once; read back as a Config)
    environment.json         seed, command, versions, machine (environment.resumed.json after a resume)
    clusters.csv/.json       the stage-1 cluster of every training image and its provenance
    cluster_stats.json       H(Z), I(Z;T), ... of those clusters against the training labels
    skipped.csv              images left out by data.skip_bad (path, reason), when any
    checkpoints/             Lightning checkpoints every N epochs and last.ckpt (for resume)
    logs/                    metrics.csv and TensorBoard events
    encoder.pt               the trained encoder (plain tensors: safe to load)
    metrics.json, report.md  written by the evaluation

Training writes through a :class:`RunDir`; evaluation and reports read through one, so no other module
knows a file name of a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from clinfonce._io import atomic_open, atomic_write_with, write_json
from clinfonce.clusters import ClusterAssignment, ClusterStats
from clinfonce.config import Config, save_config
from clinfonce.errors import InputError
from clinfonce.typed import from_mapping

#: The training-loss column of the CSV log, one value per epoch.
EPOCH_LOSS_KEY = "train/loss_epoch"


class RunDir:
    """One run's directory. Creating the object touches nothing on disk."""

    CONFIG = "config.yaml"
    ENVIRONMENT = "environment.json"
    ENVIRONMENT_RESUMED = "environment.resumed.json"
    CLUSTERS = "clusters.csv"
    CLUSTER_STATS = "cluster_stats.json"
    SKIPPED = "skipped.csv"
    CHECKPOINTS = "checkpoints"
    LAST_CHECKPOINT = "last.ckpt"
    LOGS = "logs"
    METRICS_CSV = "metrics.csv"
    ENCODER = "encoder.pt"
    METRICS = "metrics.json"
    REPORT = "report.md"

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

    def exists(self) -> bool:
        """Whether a run was started here (its config is written first)."""
        return self.config_path.is_file()

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
    def write_clusters(
        self,
        clusters: ClusterAssignment,
        columns: Mapping[str, Sequence[Any]],
        stats: ClusterStats | None,
    ) -> None:
        """The stage-1 assignment of the training rows (CSV + provenance JSON) and its statistics."""
        clusters.save(self.clusters_path, columns=columns)
        if stats is not None:
            write_json(self.path / self.CLUSTER_STATS, stats.to_dict())

    def clusters(self) -> ClusterAssignment | None:
        return ClusterAssignment.load(self.clusters_path) if self.clusters_path.is_file() else None

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
        """``epoch, train_loss``: the mean training loss of every finished epoch (empty without a log)."""
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
        """``metrics.json`` and ``report.md`` into ``out_dir`` (default: the run); returns the report's path."""
        out = Path(out_dir) if out_dir is not None else self.path
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / self.METRICS, dict(metrics))
        with atomic_open(out / self.REPORT, "w", encoding="utf-8") as handle:
            handle.write(report)
        return out / self.REPORT

    def metrics(self) -> dict[str, Any] | None:
        path = self.path / self.METRICS
        return json.loads(path.read_text()) if path.is_file() else None
