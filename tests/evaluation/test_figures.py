"""The run's pictures draw what the evaluation measured."""

from __future__ import annotations

import numpy as np
import pytest

from clinfonce.config import load_config
from clinfonce.data.registry import load_dataset
from clinfonce.evaluation import figures
from clinfonce.evaluation.pipeline import evaluate_encoder
from clinfonce.training.engine import train


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    data = load_dataset("shapes", {"n_train": 192, "n_test": 96, "seed": 1})
    out = tmp_path_factory.mktemp("fig") / "run"
    config = load_config(
        "shapes",
        {
            "data.options": {"n_train": 192, "n_test": 96, "seed": 1},
            "model.width": 8,
            "optim.batch_size": 32,
            "train.epochs": 1,
            "train.progress_bar": False,
            "train.out": str(out),
        },
    )
    run = train(config, dataset=data)
    return data, run, evaluate_encoder(run.encoder, data, config.eval)


def test_the_probe_predictions_are_those_the_accuracy_counts(evaluated) -> None:
    _, _, evaluation = evaluated
    accuracy = (evaluation.test_predicted == evaluation.test_labels).mean() * 100
    assert accuracy == pytest.approx(evaluation.metrics["linear_top1"], abs=1e-6)
    assert evaluation.test_features.shape == (96, 64) and evaluation.train_features.shape == (192, 64)


def test_figures_that_do_not_apply_are_left_out(evaluated, tmp_path) -> None:
    data, run, evaluation = evaluated
    many = [f"class {i}" for i in range(figures.MAX_NAMED_CLASSES + 1)]
    assert figures.confusion_matrix(tmp_path, evaluation.test_labels, evaluation.test_predicted, many) is None
    # a run without clusters (SimCLR) has no contact sheet; the map then shows the test images only
    none = np.full(len(data), -1)
    assert figures.contact_sheet(tmp_path, data, evaluation.train_rows, none, None) is None
    assert (
        figures.embedding_map(
            tmp_path, evaluation.test_features, evaluation.test_labels, evaluation.train_features, none[:192]
        )
        == "embedding_map.png"
    )
    assert figures.training_curve(tmp_path, run.curve().iloc[:0]) is None


def test_contact_sheet_shows_the_largest_clusters(evaluated, tmp_path) -> None:
    from PIL import Image

    data, run, evaluation = evaluated
    clusters = run.row_clusters(len(data))
    name = figures.contact_sheet(tmp_path, data, evaluation.train_rows, clusters, list(run.clusters.keys))
    with Image.open(tmp_path / name) as picture:
        assert picture.size[0] > 400 and picture.size[1] > 400
