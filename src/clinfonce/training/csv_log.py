"""A CSV logger that keeps a resumed run's history, and whose file a kill cannot tear.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when it starts in a non-empty directory (a resumed run
would lose the curve of every epoch before the checkpoint), and it appends to or truncates and rewrites the
file in place (a kill mid-write leaves a torn or empty file). :class:`ResumableCSVLogger` keeps the rows
logged before the checkpoint's step and drops the later ones (those of an epoch that was interrupted and will
be trained again), and writes every flush as a whole new file renamed into place.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from clinfonce._io import atomic_open


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_before_step: int | None) -> None:
        self._keep_before_step = keep_before_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        # called by the base class's __init__, where it would delete metrics.csv
        if self._keep_before_step is None or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        keys, rows = self._read()
        self._write(keys, [row for row in rows if int(float(row["step"])) < self._keep_before_step])
        self.metrics_keys = sorted(keys)  # the base class keeps its header keys sorted

    def save(self) -> None:
        """Write the rows so far and the new ones as one new file (atomically)."""
        if not self.metrics:
            return
        self._record_new_keys()
        keys, rows = self._read() if self._fs.isfile(self.metrics_file_path) else ([], [])
        header = list(dict.fromkeys([*self.metrics_keys, *keys]))
        self._write(header, [*rows, *self.metrics])
        self.metrics = []

    def _read(self) -> tuple[list[str], list[dict[str, Any]]]:
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            return list(reader.fieldnames or []), list(reader)

    def _write(self, keys: list[str], rows: list[dict[str, Any]]) -> None:
        with atomic_open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step`` (the global step of the checkpoint a run resumes from),
    keeps the ``metrics.csv`` rows logged before that step instead of deleting the file, and writes the file
    atomically."""

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
