"""A run's short markdown report, rendered from objects (the run directory writes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from clinfonce.clusters import ClusterAssignment, ClusterStats
from clinfonce.config import Config
from clinfonce.methods import METHODS
from clinfonce.records import TrainingSummary


def positives_line(provenance: dict[str, Any], shown: int = 20) -> str:
    """One report line on soft positives from tags: how many tags, how weighted, the most frequent."""
    tags = provenance.get("tags", {})
    listed = ", ".join(f"{tag} ({count})" for tag, count in list(tags.items())[:shown])
    more = f", ... ({len(tags) - shown} more; all in clusters.json)" if len(tags) > shown else ""
    untagged = provenance.get("n_untagged_rows", 0) + provenance.get("n_missing_rows", 0)
    alone = f"; {untagged} image(s) without tags have their own views only" if untagged else ""
    return (
        f"- stage 1: soft positives from {provenance.get('n_tags')} tags "
        f"({provenance.get('weighting')} weights; a pair of images weighs the cosine of their tag vectors)"
        f"{alone}; tags used, with the training images holding each: {listed}{more}"
    )


def render_run_report(
    *,
    name: str,
    metrics: dict[str, Any],
    config: Config | None = None,
    clusters: ClusterAssignment | None = None,
    stats: ClusterStats | None = None,
    n_skipped: int = 0,
    curve: pd.DataFrame | None = None,
    dataset_notes: str = "",
    figures: dict[str, str] | None = None,
    trained: TrainingSummary | None = None,
    start: str | None = None,
    positives: dict[str, Any] | None = None,
) -> str:
    """The markdown text of ``report.md``.

    Args:
        name: the run's name (its directory's name).
        metrics: what the evaluation measured (``linear_top1``, ``knn20_top1``, ``probe``, ...).
        config: the run's config, or None for an encoder evaluated outside its run.
        clusters: the stage-1 assignment of the training images, if the method used one.
        stats: its statistics against the training labels.
        n_skipped: unreadable images left out of training.
        curve: ``epoch, train_loss`` per epoch.
        dataset_notes: what the dataset says about its auxiliary information.
        figures: caption -> PNG file name beside the report, shown after the numbers.
        trained: the run's training summary (steps skipped for a non-finite loss or gradient; processes,
            learning rate and precision as resolved); None before training finished.
        start: where the encoder's weights started from (its encoder file's record).
        positives: the provenance of soft positives from tags (``method.positives: tags``), if used.
    """
    lines = [f"# Run report: {name}", ""]
    if "checkpoint" in metrics:
        lines.append(f"- evaluated: `{metrics['checkpoint']}` on dataset `{metrics.get('dataset')}`")
    if config is not None:
        method, model, optim, train = config.method, config.model, config.optim, config.train
        about = METHODS[method.name]
        views = f"{method.n_views} view{'s' if method.n_views > 1 else ''}"
        detail = f"temperature {method.temperature}, {views}" if about.contrastive else views
        joint = "; plus InfoNCE on a second head (joint_infonce)" if method.joint_infonce else ""
        lines.append(
            f"- dataset: `{config.data.name}`; method: `{method.name}`: {about.summary} ({detail}){joint}; "
            f"backbone `{model.backbone}`"
        )
        if about.trains:
            frozen = (
                f", the first {model.freeze_stages} backbone stage(s) frozen" if model.freeze_stages else ""
            )
            lines.append(
                f"- {train.epochs} epochs, {_batch_and_lr(optim, trained)}, seed {train.seed}, "
                f"precision {trained.precision if trained is not None else train.precision}{frozen}"
            )
        else:
            lines.append("- not trained: the starting weights are evaluated as they are")
    if start is not None:
        lines.append(f"- weights started from: {start}")
    if dataset_notes:
        lines.append(f"- auxiliary information: {dataset_notes}")
    if clusters is not None:
        detail = ", ".join(
            f"{k}={v}" for k, v in clusters.provenance.items() if isinstance(v, (int, float, str))
        )
        lines.append(
            f"- stage 1: {clusters.n_clusters} clusters over {clusters.n} training images ({detail})"
        )
        if config is not None and about.uses == "attributes":
            learned = ", ".join(clusters.provenance.get("attributes", []))
            lines.append(f"- attributes learned (those the clusters combine): {learned}")
    if positives is not None:
        lines.append(positives_line(positives))
    if stats is not None:
        lines.append(
            f"- cluster quality: I(Z;T) = {stats.I_Z_T:.3f} of H(T) = {stats.H_T:.3f} bits, "
            f"H(Z|T) = {stats.H_Z_given_T:.3f} bits, purity {stats.purity:.3f}"
        )
        lines += [f"  - note: {note}" for note in stats.recommendations()]
    if n_skipped:
        lines.append(f"- skipped unreadable images: {n_skipped} (listed in skipped.csv)")
    if trained is not None and trained.bad_steps:
        lines.append(
            f"- skipped optimizer steps with a non-finite loss or gradient: {len(trained.bad_steps)}"
        )
    if curve is not None and len(curve):
        lines.append(f"- final training loss (last epoch mean): {float(curve['train_loss'].iloc[-1]):.4f}")
    lines += ["", "## Evaluation (test split; probe settings chosen on a validation split)", ""]
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    shown = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in numbers.values()]
    table = pd.DataFrame({"metric": list(numbers), "value": shown})
    lines.append(table.to_markdown(index=False, colalign=("left", "right"), disable_numparse=True))
    probe = metrics.get("probe")
    if probe:
        lines += ["", f"Linear probe: weight decay {probe['weight_decay']}, epoch {probe['epoch']} "
                  f"(validation top-1 {probe['val_top1']:.2f})."]  # fmt: skip
    if figures:
        lines += ["", "## Figures", ""]
        for caption, name in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def markdown_to_html(markdown_text: str, folder: Path, title: str) -> str:
    """A self-contained HTML page of a report: the markdown rendered (tables included) and every image it
    shows from ``folder`` embedded as a data URI, so the file can be mailed or opened anywhere."""
    import base64
    import html
    import re

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])

    def embed(match: re.Match) -> str:
        path = folder / html.unescape(match.group(1))
        if not path.is_file() or path.suffix.lower() != ".png":
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+)"', embed, body)
    return _HTML.format(title=html.escape(title), body=body)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; }}
td {{ text-align: right; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
code {{ background: #f4f4f4; padding: 0 0.2rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _batch_and_lr(optim: Any, trained: TrainingSummary | None) -> str:
    """``batch 128, lr 0.03``, or with several processes ``batch 128 x 2 processes = 256, lr 0.06``."""
    world = trained.world_size if trained is not None else 1
    batch = f"batch {optim.batch_size}"
    if world > 1:
        batch += f" x {world} processes = {optim.batch_size * world}"
    return f"{batch}, lr {trained.lr if trained is not None else optim.lr:g}"
