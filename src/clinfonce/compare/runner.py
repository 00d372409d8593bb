"""Run a comparison: train and evaluate every planned run, re-use the finished ones, keep going past a
failed one, and write the results after every run (so an interrupted comparison has its table so far).

Layout of ``OUT``::

    compare.yaml     the comparison as run (resolved)
    results.csv      one row per run (see :data:`RESULT_COLUMNS`)
    report.md        mean ± std over seeds per method and cluster setting, plots, failures
    accuracy.png     test accuracy per method and setting (error bars: std over seeds)
    sweep.png        with a sweep: accuracy against the swept value, I(Z;T) and H(Z|T) on a second axis
    runs/<method>[-<setting>]-seed<N>/   one run directory each (clinfonce.run.RunDir)
    failures/<run>.txt                   the traceback of each failed run
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from clinfonce._io import atomic_open, atomic_write_with
from clinfonce.compare.report import write_plots, write_report
from clinfonce.compare.spec import CompareSpec, PlannedRun, plan
from clinfonce.config import Config
from clinfonce.data.dataset import ImageDataset
from clinfonce.errors import InputError, RunStopped, one_line
from clinfonce.logs import library_output
from clinfonce.run import Run, RunDir, config_differences

log = logging.getLogger(__name__)

#: The columns of results.csv, in order (the swept key, when there is one, comes after ``setting``).
RESULT_COLUMNS = (
    "method",
    "setting",
    "seed",
    "status",
    "top1",
    "top5",
    "knn20_top1",
    "n_clusters",
    "I_Z_T",
    "H_Z_given_T",
    "H_T",
    "train_seconds",
    "reused",
    "run",
    "error",
)
#: Keys that may differ between a planned run and the run already in its folder for it to be re-used.
REUSABLE_KEYS = (
    "train.out",
    "train.resume",
    "train.progress_bar",
    "data.num_workers",
    "data.options.workers",
)


def run_compare(
    spec: CompareSpec,
    extra_overrides: Sequence[str] = (),
    overwrite: bool = False,
    dataset: ImageDataset | None = None,
    say: Callable[[str], None] = print,
    title: str = "clinfonce compare",
    introduction: Callable[[pd.DataFrame], list[str]] | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Run the comparison into ``spec.out``; return the results (one row per planned run).

    Args:
        spec: the comparison (:func:`clinfonce.compare.spec.load_spec`).
        extra_overrides: ``KEY=VALUE`` overrides for every run, after ``spec.overrides``.
        overwrite: replace runs in ``OUT/runs`` made with other settings (else that is an error, raised
            before anything trains).
        dataset: the data, already loaded (else the base config's ``data`` section is loaded once).
        say: where the one line per run goes.
        title: the report's title.
        introduction: markdown lines (made from the results so far) that open the report.
        verbose: show each run's progress (stage 1, epochs, evaluation) on stderr; otherwise only ``say``
            speaks (no Lightning message, no warning).

    Raises:
        InputError: a setting does not resolve, or a run folder holds a run with other settings.
    """
    with library_output(verbose):
        return _run_planned(spec, plan(spec, extra_overrides), overwrite, dataset, say, title, introduction)


def _run_planned(
    spec: CompareSpec,
    planned: list[PlannedRun],
    overwrite: bool,
    dataset: ImageDataset | None,
    say: Callable[[str], None],
    title: str,
    introduction: Callable[[pd.DataFrame], list[str]] | None,
) -> pd.DataFrame:
    out = Path(spec.out)
    conflicts = [(run, keys) for run in planned if (keys := _conflict(run.config))]
    replace = {run.name for run, _ in conflicts}
    if conflicts and not overwrite:
        run, keys = conflicts[0]
        raise InputError(
            f"{run.config.train.out} holds a run made with other {', '.join(keys[:5])}"
            + (f" (and {len(conflicts) - 1} more such run(s))" if len(conflicts) > 1 else "")
            + ": use another --out, or --overwrite to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "compare.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump(spec.to_dict(), handle, sort_keys=False)
    if dataset is None:
        dataset = planned[0].config.data.load()
    sweep_key = next(iter(spec.sweep), None)
    rows: list[dict[str, Any]] = []
    for index, run in enumerate(planned, 1):
        row = _run_one(run, out, dataset, overwrite=run.name in replace)
        rows.append(row)
        say(f"[{index}/{len(planned)}] {_summary_line(row)}")
        table = _table(rows, sweep_key)
        atomic_write_with(out / "results.csv", lambda tmp, table=table: table.to_csv(tmp, index=False))
        plots = write_plots(out, table, sweep_key)
        opening = introduction(table) if introduction is not None else []
        write_report(out, table, plots, total_runs=len(planned), title=title, introduction=opening)
    return _table(rows, sweep_key)


def _conflict(config: Config) -> list[str]:
    """The keys in which the run already in ``config``'s folder differs from ``config`` (empty: none)."""
    existing = RunDir(config.train.out)
    if not existing.exists():
        return []
    try:
        return config_differences(existing.config(), config, allowed=REUSABLE_KEYS)
    except InputError:
        return ["config (unreadable)"]


def _run_one(run: PlannedRun, out: Path, dataset: ImageDataset, overwrite: bool) -> dict[str, Any]:
    """Train (or resume, or re-use) and evaluate one run; a failure becomes a row, never an exception
    (but Ctrl-C stops the comparison)."""
    from clinfonce.evaluation.pipeline import evaluate_run
    from clinfonce.training.engine import train

    folder = RunDir(run.config.train.out)
    row: dict[str, Any] = {
        "method": run.method,
        "setting": run.setting,
        "seed": run.seed,
        "sweep_value": run.sweep_value,
        "run": folder.path.relative_to(out.absolute()).as_posix(),
        "reused": False,
    }
    try:
        finished = None if overwrite or folder.metrics() is None else Run.read(folder.path)
        if finished is not None:
            row["reused"] = True
        else:
            resume = None if overwrite or not folder.exists() else "auto"
            config = dataclasses.replace(
                run.config, train=dataclasses.replace(run.config.train, resume=resume)
            )
            trained = train(config, dataset=dataset, overwrite=overwrite and folder.exists())
            finished = dataclasses.replace(trained, metrics=evaluate_run(trained, dataset))
        # the run's own record of its training time (kept over resumes and re-uses)
        seconds = finished.training.train_seconds if finished.training is not None else None
        row.update(
            status="ok", **_metrics(finished.metrics), **_cluster_columns(finished), train_seconds=seconds
        )
    except (KeyboardInterrupt, RunStopped) as stopped:
        if isinstance(stopped, RunStopped) and stopped.exit_status != 130:
            row.update(status="failed", error=one_line(stopped))
        else:
            raise
    except Exception as error:  # one failed run is reported, the others still run
        row.update(status="failed", error=one_line(error))
        failures = out / "failures"
        failures.mkdir(exist_ok=True)
        with atomic_open(failures / f"{run.name}.txt", "w", encoding="utf-8") as handle:
            handle.write("".join(traceback.format_exception(error)))
        log.warning(
            "run %s failed: %s (traceback in %s)", run.name, row["error"], failures / f"{run.name}.txt"
        )
    return row


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The probe's accuracies (%) a results row holds (top-5 only with more than 5 classes, kNN-20 only
    when ``eval.knn_k`` has 20)."""
    values = {
        "top1": metrics["linear_top1"],
        "top5": metrics.get("linear_top5"),
        "knn20_top1": metrics.get("knn20_top1"),
    }
    return {key: None if value is None else round(float(value), 2) for key, value in values.items()}


def _cluster_columns(run: Run) -> dict[str, Any]:
    """Size and information of the clustering the run trained on (its stage-1 clusters, or the last
    K-means of a run that re-clustered), on the training split, against the labels."""
    stats = run.cluster_stats
    if stats is None:
        return {}
    return {
        "n_clusters": stats.n_clusters,
        "I_Z_T": round(stats.I_Z_T, 4),
        "H_Z_given_T": round(stats.H_Z_given_T, 4),
        "H_T": round(stats.H_T, 4),
    }


def _table(rows: list[dict[str, Any]], sweep_key: str | None) -> pd.DataFrame:
    """The results with :data:`RESULT_COLUMNS` (and the swept key after ``setting``)."""
    table = pd.DataFrame(rows)
    columns = list(RESULT_COLUMNS)
    if sweep_key is not None:
        values = table.pop("sweep_value")
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna().equals(values.notna()) and (numbers.dropna() % 1 == 0).all()
        table[sweep_key] = numbers.astype("Int64") if whole else values
        columns.insert(columns.index("setting") + 1, sweep_key)
    else:
        table = table.drop(columns="sweep_value")
    return table.reindex(columns=columns)


def _summary_line(row: dict[str, Any]) -> str:
    what = " ".join(str(part) for part in (row["method"], row["setting"], f"seed {row['seed']}") if part)
    if row.get("status") != "ok":
        return f"{what}: FAILED: {row.get('error')}"
    how = "re-used" if row["reused"] else f"trained in {row['train_seconds']:.0f} s"
    return f"{what}: linear top-1 {row['top1']:.2f}% ({how})"
