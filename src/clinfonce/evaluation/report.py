"""A run's ``metrics.json`` and its short markdown ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from clinfonce._io import atomic_open, write_json


def write_run_report(
    run_dir: Path, metrics: dict[str, Any], dataset_notes: str = "", out_dir: Path | None = None
) -> Path:
    """Write ``metrics.json`` and ``report.md`` about the run in ``run_dir`` into ``out_dir`` (default: the
    run directory); return the report's path."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    write_json(out_dir / "metrics.json", metrics)
    lines = [f"# Run report: {run_dir.name}", ""]
    config = _read_yaml(run_dir / "config.yaml")
    if config:
        method, data, model, optim, train = (config[k] for k in ("method", "data", "model", "optim", "train"))
        lines += [
            f"- dataset: `{data['name']}`; method: `{method['name']}` (temperature {method['temperature']}, "
            f"{method['views']} views); backbone `{model['backbone']}`",
            f"- {train['epochs']} epochs, batch {optim['batch_size']}, lr {optim['lr']}, seed {train['seed']}, "
            f"precision {train['precision']}",
        ]
    if dataset_notes:
        lines.append(f"- auxiliary information: {dataset_notes}")
    clusters = _read_json(run_dir / "clusters.json")
    if clusters:
        provenance = clusters["provenance"]
        detail = ", ".join(f"{k}={v}" for k, v in provenance.items() if isinstance(v, (int, float, str)))
        lines.append(
            f"- stage 1: {clusters['n_clusters']} clusters over {clusters['n']} training images ({detail})"
        )
    stats = _read_json(run_dir / "cluster_stats.json")
    if stats:
        lines.append(
            f"- cluster quality: I(Z;T) = {stats['I_Z_T']:.3f} of H(T) = {stats['H_T']:.3f} bits, "
            f"H(Z|T) = {stats['H_Z_given_T']:.3f} bits, purity {stats['purity']:.3f}"
        )
        lines += [f"  - note: {note}" for note in stats.get("notes", [])]
    skipped = run_dir / "skipped.csv"
    if skipped.exists():
        lines.append(f"- skipped unreadable images: {len(pd.read_csv(skipped))} (listed in skipped.csv)")
    loss = final_train_loss(run_dir)
    if loss is not None:
        lines.append(f"- final training loss (last epoch mean): {loss:.4f}")
    lines += ["", "## Evaluation (test split; probe settings chosen on a validation split)", ""]
    lines += ["| metric | value |", "|---|---:|"]
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            lines.append(f"| {key} | {value:.2f} |" if isinstance(value, float) else f"| {key} | {value} |")
    probe = metrics.get("probe")
    if probe:
        lines += ["", f"Linear probe: weight decay {probe['weight_decay']}, epoch {probe['epoch']} "
                  f"(validation top-1 {probe['val_top1']:.2f})."]  # fmt: skip
    path = out_dir / "report.md"
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def training_curve(run_dir: Path) -> pd.DataFrame:
    """``epoch, train_loss`` per epoch from the run's CSV log (empty when there is none)."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.exists():
        return pd.DataFrame(columns=["epoch", "train_loss"])
    log = pd.read_csv(path)
    if "train/loss_epoch" not in log.columns:
        return pd.DataFrame(columns=["epoch", "train_loss"])
    curve = log.dropna(subset=["train/loss_epoch"])[["epoch", "train/loss_epoch"]]
    return curve.rename(columns={"train/loss_epoch": "train_loss"}).reset_index(drop=True)


def final_train_loss(run_dir: Path) -> float | None:
    curve = training_curve(run_dir)
    return float(curve["train_loss"].iloc[-1]) if len(curve) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    return yaml.safe_load(path.read_text()) if path.exists() else None
