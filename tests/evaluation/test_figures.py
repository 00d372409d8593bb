"""The run's pictures draw what the evaluation measured."""

from __future__ import annotations

import numpy as np
import pytest

from clinfonce.config import load_config
from clinfonce.data.registry import load_dataset
from clinfonce.evaluation import figures
from clinfonce.evaluation.pipeline import evaluate_encoder
from clinfonce.training.engine import train
from tiny_runs import TINY_SHAPES


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig") / "run"
    config = load_config("shapes", [*TINY_SHAPES, "train.epochs=1", f"train.out={out}"])
    data = load_dataset("shapes", config.data.options)
    run = train(config, dataset=data)
    return data, run, evaluate_encoder(run.encoder, data, config.eval)


def test_the_probe_predictions_are_those_the_accuracy_counts(evaluated) -> None:
    data, _, evaluation = evaluated
    # the labels counted are the table's labels of the test rows, not the evaluation's own copy of them
    np.testing.assert_array_equal(evaluation.test_labels, data.table["label"].to_numpy()[data.rows("test")])
    accuracy = (evaluation.test_predicted == evaluation.test_labels).mean() * 100
    assert accuracy == pytest.approx(evaluation.metrics["linear_top1"], abs=1e-6)
    assert evaluation.test_features.shape == (64, 64) and evaluation.train_features.shape == (256, 64)


def test_figures_that_do_not_apply_are_left_out(evaluated, tmp_path) -> None:
    data, run, evaluation = evaluated
    many = [f"class {i}" for i in range(figures.MAX_NAMED_CLASSES + 1)]
    assert figures.confusion_matrix(tmp_path, evaluation.test_labels, evaluation.test_predicted, many) is None
    # a run without clusters (SimCLR) has no contact sheet; the map then shows the test images only
    none = np.full(len(data), -1)
    assert figures.contact_sheet(tmp_path, data, evaluation.train_rows, none, None) is None
    assert (
        figures.embedding_map(
            tmp_path, evaluation.test_features, evaluation.test_labels, evaluation.train_features, none[:256]
        )
        == "embedding_map.png"
    )
    assert figures.training_curve(tmp_path, run.curve().iloc[:0]) is None


def test_contact_sheet_shows_the_largest_clusters(evaluated, tmp_path, monkeypatch) -> None:
    """The mosaic drawn is checked against the clusters counted here: line i shows up to 8 distinct training
    images, all of one cluster, whose size is the i-th largest, and is labelled with that size."""
    from matplotlib.axes import Axes
    from PIL import Image

    data, run, evaluation = evaluated
    drawn, ticks = [], []
    imshow, set_yticks = Axes.imshow, Axes.set_yticks
    monkeypatch.setattr(Axes, "imshow", lambda self, x, *a, **k: drawn.append(x) or imshow(self, x, *a, **k))
    monkeypatch.setattr(
        Axes,
        "set_yticks",
        lambda self, t, labels=None, **k: ticks.append(labels) or set_yticks(self, t, labels, **k),
    )
    clusters = run.row_clusters(len(data))
    name = figures.contact_sheet(tmp_path, data, evaluation.train_rows, clusters, list(run.clusters.keys))
    with Image.open(tmp_path / name) as picture:
        assert picture.format == "PNG"
    (mosaic,) = drawn
    rows = evaluation.train_rows
    sizes = np.bincount(clusters[rows])
    largest = sorted(sizes[sizes > 0], reverse=True)[:8]
    row_of = {data.loader(int(row)).permute(1, 2, 0).numpy().tobytes(): int(row) for row in rows}
    (height, width), pad = data.image_size, 2
    assert mosaic.shape[0] == len(largest) * (height + pad) and len(ticks[0]) == len(largest)
    for line, size in enumerate(largest):
        top = line * (height + pad)
        shown = []
        for column in range(min(8, size)):
            left = column * (width + pad)
            tile = np.ascontiguousarray(mosaic[top : top + height, left : left + width])
            shown.append(row_of[tile.tobytes()])  # a training image, pixel for pixel
        assert len(set(shown)) == len(shown)
        (cluster,) = set(clusters[shown].tolist())  # one cluster per line ...
        assert sizes[cluster] == size  # ... the line-th largest
        # labelled with the cluster's key (wrapped to at most 3 lines, so possibly cut) and its size
        *key_lines, count = ticks[0][line].split("\n")
        key, joined = run.clusters.keys[cluster], " ".join(key_lines)
        assert count == f"({size} images)" and len(key_lines) <= 3
        assert joined == key or (joined.endswith(" ...") and key.startswith(joined[: -len(" ...")])), joined
        assert (mosaic[top : top + height, min(8, size) * (width + pad) :] == 255).all()  # nothing else drawn


def test_the_embedding_map_names_each_test_class_in_its_colour(tmp_path, monkeypatch) -> None:
    """Each legend entry has the colour of that class's points, and its name; many classes get no legend."""
    saved = []
    monkeypatch.setattr(figures, "_save", lambda figure, path: saved.append(figure) or path.name)
    rng = np.random.default_rng(0)
    labels = rng.choice([1, 3, 4], size=90)  # classes 0 and 2 have no test image here
    features = rng.normal(size=(90, 8))
    names = ["zero", "one", "two", "three", "four"]
    figures.embedding_map(tmp_path, features, labels, features, np.full(90, -1), names)
    ax = saved[0].axes[0]
    points = ax.collections[0]
    colours = points.to_rgba(points.get_array())
    legend = ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["one", "three", "four"]
    for handle, label in zip(legend.legend_handles, [1, 3, 4], strict=True):
        np.testing.assert_allclose(handle.get_color(), colours[labels == label][0])
    many = np.arange(90) % (figures.MAX_LEGEND_CLASSES + 1)
    figures.embedding_map(tmp_path, features, many, features, np.full(90, -1), [str(i) for i in range(13)])
    assert saved[1].axes[0].get_legend() is None
