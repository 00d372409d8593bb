"""Embeddings people can use: a table of embeddings with what each image is, and a faiss index to search.

An index folder (``clinfonce embed --index``) holds

- ``faiss.index``: an exact inner-product index (``faiss.IndexFlatIP``) over L2-normalised embeddings, so a
  search ranks by cosine similarity;
- ``index.csv``: one row per indexed vector, in index order: ``row`` (of the dataset's table), ``path``,
  ``label``, ``class_name``, ``split`` and ``cluster`` (the run's stage-1 cluster of a training image);
- ``index.json``: what was embedded: the checkpoint, the dataset and its options, the split, whether the
  vectors are backbone features or projections, and their size.

:func:`open_index` reads it back; ``clinfonce neighbours`` embeds a query image with the same encoder and
preprocessing and prints (and draws) its nearest images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfonce._io import atomic_write_with, write_json
from clinfonce.errors import InputError

INDEX_FILE = "faiss.index"
ITEMS_FILE = "index.csv"
INFO_FILE = "index.json"


def write_index(
    out: str | os.PathLike, embeddings: np.ndarray, items: pd.DataFrame, info: dict[str, Any]
) -> None:
    """Write an index folder (see the module docstring).

    Args:
        out: the folder (created).
        embeddings: ``float32 [N, D]``, row i = ``items`` row i; normalised here.
        items: ``[N]`` rows describing the vectors.
        info: what was embedded (checkpoint, dataset, split, ``projection``).
    """
    import faiss

    if len(embeddings) != len(items):
        raise ValueError(f"{len(embeddings)} embeddings for {len(items)} items")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
    faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    atomic_write_with(out / INDEX_FILE, lambda tmp: faiss.write_index(index, str(tmp)))
    atomic_write_with(out / ITEMS_FILE, lambda tmp: items.to_csv(tmp, index=False))
    write_json(out / INFO_FILE, {**info, "n": len(items), "dim": int(vectors.shape[1]), "metric": "cosine"})


@dataclass
class SearchIndex:
    """An index folder, opened.

    Attributes:
        index: the faiss index.
        items: what each vector is (``index.csv``).
        info: what was embedded (``index.json``).
        folder: where it was read from.
    """

    index: Any
    items: pd.DataFrame
    info: dict[str, Any]
    folder: Path

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of each query: ``(cosine similarities [Q, k], item positions [Q, k])``,
        most similar first (fewer than ``k`` columns when the index holds fewer items)."""
        import faiss

        vectors = np.ascontiguousarray(queries, dtype=np.float32).copy()
        if vectors.ndim != 2 or vectors.shape[1] != self.index.d:
            raise InputError(f"queries must be [Q, {self.index.d}], got {vectors.shape}")
        faiss.normalize_L2(vectors)
        return self.index.search(vectors, min(k, self.index.ntotal))


def open_index(folder: str | os.PathLike) -> SearchIndex:
    """Read an index folder written by :func:`write_index` (``clinfonce embed --index``)."""
    import faiss

    folder = Path(folder)
    missing = [name for name in (INDEX_FILE, ITEMS_FILE, INFO_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"{folder}: not an index folder (no {', '.join(missing)}); make one with clinfonce embed --index"
        )
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
    except RuntimeError as error:
        raise InputError(
            f"{folder / INDEX_FILE}: not a faiss index ({' '.join(str(error).split())[:200]})"
        ) from None
    items = pd.read_csv(
        folder / ITEMS_FILE, keep_default_na=False, na_values=[""], dtype={"cluster": "Int64"}
    )
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    if index.ntotal != len(items):
        raise InputError(
            f"{folder}: {index.ntotal} vectors in {INDEX_FILE} but {len(items)} rows in {ITEMS_FILE}"
        )
    return SearchIndex(index, items, info, folder)


def draw_neighbours(
    out: str | os.PathLike, query: str | os.PathLike, found: pd.DataFrame, info: dict[str, Any]
) -> None:
    """A PNG of the query image and its neighbours (``found``: rows of ``index.csv`` with ``similarity``),
    each titled with its rank, similarity and class; the images come from the indexed dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinfonce.data.files import open_image
    from clinfonce.data.registry import load_dataset, source
    from clinfonce.typed import fields_of

    options = dict(info.get("data_options") or {})
    if "check_files" in {name for name, *_ in fields_of(source(info["dataset"]).options)}:
        options["check_files"] = False  # only the drawn images are read
    dataset = load_dataset(info["dataset"], options)
    columns = min(6, len(found) + 1)
    rows = -(-(len(found) + 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    with open_image(query) as image:
        axes[0][0].imshow(image.convert("RGB"))
    axes[0][0].set_title(f"query\n{Path(query).name}", fontsize=8)
    for i, item in enumerate(found.itertuples(), 1):
        pixels = dataset.loader(int(item.row)).permute(1, 2, 0).numpy()
        ax = axes[i // columns][i % columns]
        ax.imshow(
            pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray" if pixels.shape[2] == 1 else None
        )
        label = getattr(item, "class_name", "") or ""
        ax.set_title(f"#{item.rank}  {item.similarity:.3f}\n{str(label)[:18]}", fontsize=8)
    figure.suptitle("Nearest images (cosine similarity of the embeddings)", fontsize=9)
    figure.tight_layout()
    atomic_write_with(Path(out), lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)
