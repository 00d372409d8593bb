"""A CSV logger that keeps a resumed run's history.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when it starts in a non-empty directory, so a resumed run
would lose the curve of every epoch before the checkpoint. :class:`ResumableCSVLogger` keeps the rows
logged before the checkpoint's step and drops the later ones (those of an epoch that was interrupted and
will be trained again), then appends as usual.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_before_step: int | None) -> None:
        self._keep_before_step = keep_before_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        # called by the base class's __init__, where it would delete metrics.csv
        if self._keep_before_step is None or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if int(float(row["step"])) < self._keep_before_step]
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)  # the base class keeps its header keys sorted


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step`` (the global step of the checkpoint a run resumes from),
    keeps the ``metrics.csv`` rows logged before that step instead of deleting the file."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self._resume_step)
        return self._experiment
