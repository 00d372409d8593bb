"""The pictures of a run, drawn from its evaluation: training curve, per-class accuracy, confusion matrix,
a 2-D map of the embeddings, and a contact sheet of the clusters. Each function writes one PNG and returns
its file name, or None when there is nothing to draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce._io import atomic_write_with
from clinfonce.data.dataset import ImageDataset

#: Class names are written out up to this many classes; beyond it the plots show the extremes.
MAX_NAMED_CLASSES = 30
#: The embedding map names the test classes in a legend up to this many.
MAX_LEGEND_CLASSES = 12
#: Points of the 2-D map, at most (a seeded sample beyond it).
MAX_MAP_POINTS = 3000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> str:
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png", bbox_inches="tight"))
    _pyplot().close(figure)
    return path.name


def training_curve(out: Path, curve: pd.DataFrame) -> str | None:
    """``curve.png``: the mean training loss of every epoch."""
    if curve is None or curve.empty:
        return None
    from matplotlib.ticker import MaxNLocator

    figure, axes = _pyplot().subplots(figsize=(5.5, 3.4))
    axes.plot(curve["epoch"] + 1, curve["train_loss"], "o-", color="#2b7bba", markersize=3)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("training loss (epoch mean)")
    axes.set_title("Training curve", fontsize=10)
    figure.tight_layout()
    return _save(figure, out / "curve.png")


def per_class_accuracy(
    out: Path, labels: np.ndarray, predicted: np.ndarray, class_names: list[str]
) -> str | None:
    """``per_class.png``: the linear probe's test accuracy of every class (the lowest and highest
    :data:`MAX_NAMED_CLASSES` // 2 when there are more), with each class's test count."""
    classes = np.unique(labels)
    if len(classes) == 0:
        return None
    accuracy = np.array([(predicted[labels == c] == c).mean() * 100 for c in classes])
    counts = np.array([(labels == c).sum() for c in classes])
    order = np.argsort(accuracy, kind="stable")
    title = "Linear-probe accuracy per class (test split)"
    if len(order) > MAX_NAMED_CLASSES:
        half = MAX_NAMED_CLASSES // 2
        order = np.concatenate([order[:half], order[-half:]])
        title += f"\nthe {half} lowest and the {half} highest of {len(classes)} classes"
    figure, axes = _pyplot().subplots(figsize=(6.5, 0.26 * len(order) + 1.2))
    axes.barh(range(len(order)), accuracy[order], color="#2b7bba")
    axes.set_yticks(
        range(len(order)), [f"{class_names[classes[i]]} (n={counts[i]})" for i in order], fontsize=7
    )
    axes.set_xlim(0, 100)
    axes.set_xlabel("top-1 accuracy (%)")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, out / "per_class.png")


def confusion_matrix(
    out: Path, labels: np.ndarray, predicted: np.ndarray, class_names: list[str]
) -> str | None:
    """``confusion.png``: row-normalised confusion matrix of the linear probe on the test split (only up to
    :data:`MAX_NAMED_CLASSES` classes: beyond, the per-class plot tells more)."""
    n = len(class_names)
    if n > MAX_NAMED_CLASSES or len(labels) == 0:
        return None
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = _pyplot().subplots(figsize=(0.32 * n + 2.6, 0.32 * n + 2.0))
    shown = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    axes.set_yticks(range(n), class_names, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix (test split; each row sums to 1)", fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return _save(figure, out / "confusion.png")


def embedding_map(
    out: Path,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    train_features: np.ndarray,
    train_clusters: np.ndarray,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> str | None:
    """``embedding_map.png``: the backbone features in 2-D (UMAP when the ``umap-learn`` package is
    installed, else PCA), test images coloured by label (with a legend of ``class_names`` when there are
    at most :data:`MAX_LEGEND_CLASSES`), and training images coloured by their training cluster (stage-1
    clusters belong to the training split) when the run had clusters."""
    if len(test_features) < 3:
        return None
    rng = np.random.default_rng(seed)
    test_pick = _sample(len(test_features), rng)
    clustered = np.flatnonzero(train_clusters >= 0)
    train_pick = clustered[_sample(len(clustered), rng)] if len(clustered) else clustered
    points = np.concatenate([test_features[test_pick], train_features[train_pick]]).astype(np.float64)
    coords, how = _two_d(points, seed)
    n_labels = len(np.unique(test_labels[test_pick]))
    test_title = f"test images by label ({n_labels} classes)"
    # (title, [P, 2] points, [P] colour values, names of the values for a legend or None)
    panels = [(test_title, coords[: len(test_pick)], test_labels[test_pick], class_names)]
    if len(train_pick):
        n_clusters = len(np.unique(train_clusters[train_pick]))
        title = f"training images by training cluster ({n_clusters} clusters)"
        panels.append((title, coords[len(test_pick) :], train_clusters[train_pick], None))
    figure, axes = _pyplot().subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, xy, colour, names) in zip(axes[0], panels, strict=True):
        values, codes = np.unique(colour, return_inverse=True)
        cmap = "tab20" if codes.max() < 20 else "nipy_spectral"
        drawn = ax.scatter(xy[:, 0], xy[:, 1], c=codes, cmap=cmap, s=4)
        if names is not None and len(values) <= MAX_LEGEND_CLASSES:
            handles, _ = drawn.legend_elements(num=list(range(len(values))))
            legend = [names[value] if value >= 0 else "unlabelled" for value in values]
            ax.legend(handles, legend, fontsize=7, markerscale=0.7, loc="best", framealpha=0.8)
        ax.set_title(f"{title} ({how})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    return _save(figure, out / "embedding_map.png")


def contact_sheet(
    out: Path,
    dataset: ImageDataset,
    rows: np.ndarray,
    clusters: np.ndarray,
    keys: list[str] | None,
    seed: int = 0,
) -> str | None:
    """``clusters.png``: a random sample of training images from each of the largest clusters, one cluster
    per line, labelled with what the cluster is (its key) and its size."""
    import textwrap

    clustered = clusters[rows] >= 0
    if not clustered.any():
        return None
    ids, sizes = np.unique(clusters[rows][clustered], return_counts=True)
    largest = ids[np.argsort(-sizes, kind="stable")[:8]]
    per_line, pad = 8, 2
    rng = np.random.default_rng(seed)
    height, width = dataset.image_size
    mosaic = np.full((len(largest) * (height + pad), per_line * (width + pad), 3), 255, dtype=np.uint8)
    labels = []
    for line, cluster in enumerate(largest):
        members = rows[clusters[rows] == cluster]
        chosen = rng.choice(members, size=min(per_line, len(members)), replace=False)
        for column, row in enumerate(chosen):
            pixels = dataset.loader(int(row)).permute(1, 2, 0).numpy()
            top, left = line * (height + pad), column * (width + pad)
            mosaic[top : top + height, left : left + width] = pixels  # 1 channel broadcasts to 3
        name = keys[cluster] if keys is not None and cluster < len(keys) else f"cluster {cluster}"
        lines = textwrap.wrap(name, 34)
        if len(lines) > 3:  # a long key is cut; the size always shows
            lines = [*lines[:2], textwrap.shorten(" ".join(lines[2:]), 34, placeholder=" ...")]
        labels.append("\n".join([*lines, f"({len(members)} images)"]))
    inches = 7.0 / (per_line * (width + pad))  # the images take 7 inches across, whatever their size
    figure, axes = _pyplot().subplots(figsize=(3.2 + 7.0, 0.7 + len(largest) * (height + pad) * inches))
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_yticks([line * (height + pad) + height / 2 for line in range(len(largest))], labels, fontsize=8)
    axes.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        axes.spines[side].set_visible(False)
    axes.set_title("The largest training clusters: a random sample of each", fontsize=9)
    figure.tight_layout()
    return _save(figure, out / "clusters.png")


def _sample(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=MAX_MAP_POINTS, replace=False)) if n > MAX_MAP_POINTS else np.arange(n)


def _two_d(points: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """``[N, 2]`` coordinates and the method's name: UMAP when installed, else PCA."""
    try:
        import umap
    except ImportError:
        centred = points - points.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T, "PCA"
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(points), "UMAP"
