"""One evaluation for every method: frozen backbone features (before the head), extracted once, then a
linear probe (hyper-parameters and epoch chosen on a validation split carved from the training set) and a
weighted kNN, reported on the test split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinfonce.config import EvalConfig
from clinfonce.data.dataset import ImageDataset
from clinfonce.encoder import Encoder
from clinfonce.errors import InputError
from clinfonce.evaluation.knn import knn_accuracy
from clinfonce.evaluation.linear_probe import fit_linear_probe
from clinfonce.evaluation.report import render_run_report
from clinfonce.features import extract_features
from clinfonce.run import Run, RunDir

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What an evaluation measured (``metrics``, percent) and what it saw, for the run's figures.

    Attributes:
        metrics: ``linear_top1``, ``knn20_top1``, ..., ``probe``, ``n_train``, ``n_test``.
        train_rows, test_rows: ``int64`` table rows of the labelled training and test images.
        train_features, test_features: ``float32 [len(rows), F]`` backbone features.
        test_labels, test_predicted: ``int64 [len(test_rows)]`` true classes and the probe's predictions.
    """

    metrics: dict[str, Any]
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_features: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    test_predicted: np.ndarray


def evaluate_encoder(
    encoder: Encoder,
    dataset: ImageDataset,
    settings: EvalConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Evaluation:
    """Linear-probe and kNN accuracy (percent) of the encoder on the dataset's test split.

    The probe's weight decay and epoch are chosen on a ``settings.val_fraction`` split of the training rows
    (the dataset's own ``val`` split when it has one); the test split is used once, for the final numbers.

    Args:
        encoder: the encoder and its input pipeline.
        dataset: labelled train and test splits.
        settings: probe epochs, validation fraction, kNN k, batch size (default: :class:`EvalConfig`'s).
        seed: seed of the probe's validation split.
        device: where features are extracted and the probe is fitted.
    """
    labels = dataset.table["label"].to_numpy(np.int64)
    train_rows, val_rows, test_rows = (  # unlabelled rows (label -1) cannot be scored
        rows[labels[rows] >= 0] for rows in (dataset.rows(split) for split in ("train", "val", "test"))
    )
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise InputError(f"dataset {dataset.name!r} needs labelled train and test images to be evaluated")
    if len(np.unique(labels[train_rows])) < 2:
        raise InputError(
            f"dataset {dataset.name!r}: the labelled training images hold one class; a classifier needs two"
        )
    settings = settings or EvalConfig()
    log.info(
        "evaluation: features of %d train, %d val and %d test images ...",
        len(train_rows),
        len(val_rows),
        len(test_rows),
    )
    encoder.to(device)
    features = {
        split: extract_features(encoder.network, dataset, rows, encoder.transform, settings.batch_size)
        for split, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows))
    }
    val = {"val_x": features["val"], "val_y": labels[val_rows]} if len(val_rows) else {}
    log.info("evaluation: linear probe (%d epochs) and kNN ...", settings.probe_epochs)
    probe = fit_linear_probe(
        features["train"],
        labels[train_rows],
        val_fraction=settings.val_fraction,
        epochs=settings.probe_epochs,
        num_classes=dataset.n_classes,
        seed=seed,
        device=device,
        **val,
    )
    metrics: dict[str, Any] = {
        f"linear_{k}": v for k, v in probe.evaluate(features["test"], labels[test_rows]).items()
    }
    metrics.update(
        knn_accuracy(
            features["train"],
            labels[train_rows],
            features["test"],
            labels[test_rows],
            ks=tuple(settings.knn_k),
            device=device,
        )
    )
    metrics["probe"] = {"weight_decay": probe.weight_decay, "epoch": probe.epoch, "val_top1": probe.val_top1}
    metrics["n_train"], metrics["n_test"] = len(train_rows), len(test_rows)
    predicted = probe.predict_logits(features["test"]).argmax(dim=1).cpu().numpy()
    return Evaluation(
        metrics,
        train_rows,
        test_rows,
        features["train"],
        features["test"],
        labels[test_rows],
        predicted,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: ImageDataset | None = None,
    out_dir: Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate a run (or one of its checkpoints, or a loose ``encoder.pt``) read from disk, and write
    ``metrics.json`` and ``report.md`` (see :func:`evaluate_run`).

    Args:
        checkpoint: a run directory, its ``encoder.pt``, or a Lightning checkpoint of a run.
        dataset: the data to evaluate on; by default the run's own dataset, from its config.
        out_dir: where the metrics and report go; by default the run directory.
        device: defaults to CUDA when available.
    """
    encoder = Encoder.load(checkpoint)
    folder = RunDir.containing(encoder.source)
    run = Run.read(folder.path) if folder is not None else None
    if dataset is None:
        if run is None:
            raise InputError(f"{checkpoint}: not inside a run directory; name the dataset to evaluate on")
        dataset = run.config.data.load()
    return evaluate_run(run, dataset, encoder, out_dir, device)


def evaluate_run(
    run: Run | None,
    dataset: ImageDataset,
    encoder: Encoder | None = None,
    out_dir: Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate an encoder of a run (by default its final one) on a dataset, and write ``metrics.json``,
    ``report.md`` and the report's figures.

    Args:
        run: the run (as training handed it on, or :meth:`Run.read`); None for an encoder of no run.
        dataset: the data to evaluate on.
        encoder: the encoder to evaluate; default: the run's final encoder.
        out_dir: where the metrics and report go; by default the run directory (only for the run's final
            encoder on the run's own dataset: the run's report is about those).
        device: defaults to CUDA when available.

    Returns:
        The metrics (``linear_top1``, ``knn20_top1``, ... in percent, ``dataset``, ``method``, ``checkpoint``).
    """
    encoder = encoder if encoder is not None else (run.encoder if run is not None else None)
    if encoder is None:
        raise InputError(f"{run.dir if run else 'evaluation'}: no trained encoder to evaluate")
    if out_dir is None:
        if run is None:
            raise InputError(
                f"{encoder.source}: not inside a run directory; say where the report goes (--out)"
            )
        if encoder is not run.encoder and (
            encoder.source is None or encoder.source.resolve() != run.files.encoder_path.resolve()
        ):
            raise InputError(
                f"{encoder.source} is not the run's final encoder ({run.files.encoder_path}); "
                "say where its report goes (--out) so the run's own report stays"
            )
        if dataset.name != run.config.data.name:
            raise InputError(
                f"evaluating on {dataset.name!r}, not the run's {run.config.data.name!r}; say where the report goes (--out)"
            )
    config = run.config if run is not None else None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    evaluation = evaluate_encoder(
        encoder,
        dataset,
        config.eval if config is not None else None,
        seed=config.train.seed if config is not None else 0,
        device=device,
    )
    source = encoder.source if encoder.source is not None else run.files.encoder_path
    metrics = {
        "dataset": dataset.name,
        "method": config.method.name if config is not None else None,
        "checkpoint": str(source),
        **evaluation.metrics,
    }
    out = Path(out_dir) if out_dir is not None else run.dir
    out.mkdir(parents=True, exist_ok=True)
    clusters = run.clusters if run is not None else None
    curve = run.curve() if run is not None else None
    row_clusters = run.row_clusters(len(dataset)) if run is not None else np.full(len(dataset), -1)
    figures = draw_run_figures(out, evaluation, dataset, curve, row_clusters, clusters)
    report = render_run_report(
        name=run.dir.name if run is not None else source.name,
        metrics=metrics,
        config=config,
        clusters=clusters,
        stats=run.cluster_stats if run is not None else None,
        n_skipped=len(run.skipped) if run is not None else 0,
        curve=curve,
        dataset_notes=dataset.aux.notes,
        figures=figures,
        trained=run.training if run is not None else None,
        start=encoder.info.start,
        positives=run.positives if run is not None else None,
    )
    (run.files if run is not None else RunDir(out)).write_evaluation(metrics, report, out_dir)
    if run is not None and out_dir is None:
        _log_to_tensorboard(run.files, run.config, metrics)
    return metrics


def _log_to_tensorboard(run: RunDir, config: Any, metrics: dict[str, Any]) -> None:
    """The run's hyper-parameters with its evaluation (``eval/linear_top1``, ...) in TensorBoard's
    HPARAMS view, beside the training curves."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from clinfonce.config import hyperparameters

    scores = {f"eval/{k}": float(v) for k, v in metrics.items() if k.endswith(("top1", "top5"))}
    logger = TensorBoardLogger(run.path, name=RunDir.LOGS, version="", default_hp_metric=False)
    logger.log_hyperparams(hyperparameters(config), scores)
    logger.finalize("success")


def draw_run_figures(
    out: Path,
    evaluation: Evaluation,
    dataset: ImageDataset,
    curve: Any,
    row_clusters: np.ndarray,
    clusters: Any,
) -> dict[str, str]:
    """Every figure of a run's report that applies, into ``out``: caption -> file name."""
    from clinfonce.evaluation import figures

    names = list(dataset.class_names)
    drawn = {
        "Training curve": figures.training_curve(out, curve),
        "Accuracy per class": figures.per_class_accuracy(
            out, evaluation.test_labels, evaluation.test_predicted, names
        ),
        "Confusion matrix": figures.confusion_matrix(
            out, evaluation.test_labels, evaluation.test_predicted, names
        ),
        "Embedding map": figures.embedding_map(
            out,
            evaluation.test_features,
            evaluation.test_labels,
            evaluation.train_features,
            row_clusters[evaluation.train_rows],
            names,
        ),
        "The largest clusters": figures.contact_sheet(
            out,
            dataset,
            evaluation.train_rows,
            row_clusters,
            list(clusters.keys) if clusters is not None and clusters.keys is not None else None,
        ),
    }
    return {caption: name for caption, name in drawn.items() if name is not None}
