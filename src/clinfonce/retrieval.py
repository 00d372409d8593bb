"""Embeddings people can use: a table of embeddings with what each image is, and a faiss index to search.

An index folder (``clinfonce embed --index``) holds

- ``faiss.index``: an exact inner-product index (``faiss.IndexFlatIP``) over L2-normalised embeddings, so a
  search ranks by cosine similarity;
- ``index.csv``: one row per indexed vector, in index order: ``row`` (of the dataset's table), ``path``,
  ``label``, ``class_name``, ``split`` and ``cluster`` (the run's stage-1 cluster of a training image);
- ``index.json``: what was embedded: the checkpoint, the dataset and its options, the split, whether the
  vectors are backbone features or projections, and their size.

:func:`embed` writes the embeddings of a dataset (and, asked, the index); :func:`open_index` reads an index
back, and :func:`nearest_images` embeds a query image with the same encoder and preprocessing and finds its
nearest indexed images (``clinfonce neighbours`` prints and draws them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfonce._io import atomic_write_with, write_json
from clinfonce.errors import InputError

if TYPE_CHECKING:  # numpy and pandas are imported where used: the command line's --help reads this module
    import numpy as np
    import pandas as pd

    from clinfonce.data.dataset import ImageDataset
    from clinfonce.run import Run

INDEX_FILE = "faiss.index"
ITEMS_FILE = "index.csv"
INFO_FILE = "index.json"
EMBEDDINGS_NPY = "embeddings.npy"
EMBEDDINGS_PARQUET = "embeddings.parquet"
#: what :func:`embed` takes for ``split``
EMBED_SPLITS = ("all", "train", "val", "test")
#: the columns of :func:`nearest_images`' result worth showing, in order
NEIGHBOUR_COLUMNS = ("rank", "similarity", "row", "path", "class_name", "cluster", "split")
#: what :func:`embed` takes for ``format``
EMBED_FORMATS = ("npy", "parquet")


@dataclass(frozen=True)
class Embeddings:
    """The embeddings of a dataset's images.

    Attributes:
        vectors: ``float32 [N, D]``: backbone features, or projection-head outputs.
        items: ``[N]`` rows, row i describing vector i: ``row`` (of the dataset's table), ``path`` when
            known, ``label``, ``class_name``, ``split``, ``cluster`` (the run's cluster of a training image,
            else missing).
        files: the files written (empty when nothing was).
    """

    vectors: np.ndarray
    items: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def embed(
    run: Run | str | os.PathLike,
    dataset: ImageDataset | None = None,
    *,
    split: str = "all",
    projection: bool = False,
    out: str | os.PathLike | None = None,
    format: str = "npy",
    index: bool = False,
) -> Embeddings:
    """Embed every image of a split with a run's encoder (its own preprocessing), and write them.

    Args:
        run: a :class:`~clinfonce.run.Run`, a run directory, its ``encoder.pt`` or a checkpoint of it.
        dataset: the data to embed (loaded); default: the run's own.
        split: ``all``, ``train``, ``val`` or ``test``.
        projection: projection-head outputs instead of backbone features.
        out: a folder for ``embeddings.npy`` (or ``embeddings.parquet``: the items plus an ``embedding``
            column) and ``index.csv``; None writes nothing.
        format: ``npy`` or ``parquet``.
        index: also write a faiss index (``faiss.index`` and ``index.json``) into ``out``, for
            :func:`nearest_images`.

    Raises:
        InputError: a bad split or format, Parquet without pyarrow, an index without ``out``, a checkpoint
            outside a run directory without ``dataset``.
    """
    import numpy as np
    import pandas as pd

    from clinfonce.encoder import Encoder
    from clinfonce.features import extract_features
    from clinfonce.run import Run, RunDir

    if split not in EMBED_SPLITS:
        raise InputError(f"split must be one of {', '.join(EMBED_SPLITS)}, got {split!r}")
    if format not in EMBED_FORMATS:
        raise InputError(f"format must be one of {', '.join(EMBED_FORMATS)}, got {format!r}")
    if format == "parquet":
        require_pyarrow()
    if index and out is None:
        raise InputError("an index is written into a folder: give out")
    if isinstance(run, Run):
        if run.encoder is None:
            raise InputError(f"{run.dir}: the run has no trained encoder yet")
        encoder, owner = run.encoder, run
    else:
        encoder = Encoder.load(run)
        folder = RunDir.containing(encoder.source)
        owner = Run.read(folder.path) if folder is not None else None
    if dataset is None:
        if owner is None:
            raise InputError(f"{run}: not inside a run directory; name the dataset to embed")
        dataset = owner.config.data.load()
    table = dataset.table
    rows = np.arange(len(table)) if split == "all" else dataset.rows(split)
    vectors = extract_features(encoder.network, dataset, rows, encoder.transform, projection=projection)
    items = pd.DataFrame({"row": rows})
    if "path" in table.columns:
        items["path"] = table["path"].to_numpy()[rows]
    items["label"] = table["label"].to_numpy()[rows]
    items["class_name"] = [dataset.class_names[i] if i >= 0 else "" for i in items["label"]]
    items["split"] = table["split"].to_numpy()[rows]
    clusters = owner.row_clusters(len(table))[rows] if owner is not None else np.full(len(rows), -1)
    items["cluster"] = pd.array(np.where(clusters >= 0, clusters, None), dtype="Int64")
    if out is None:
        return Embeddings(vectors, items)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if format == "parquet":
        frame = items.assign(embedding=list(vectors))
        atomic_write_with(out / EMBEDDINGS_PARQUET, lambda tmp: frame.to_parquet(tmp, index=False))
        files = [out / EMBEDDINGS_PARQUET]
    else:
        atomic_write_with(out / EMBEDDINGS_NPY, lambda tmp: np.save(tmp, vectors))
        files = [out / EMBEDDINGS_NPY]
    atomic_write_with(out / ITEMS_FILE, lambda tmp: items.to_csv(tmp, index=False))
    files.append(out / ITEMS_FILE)
    if index:
        origin = dataset.origin
        info = {
            "checkpoint": str(Path(encoder.source).absolute()) if encoder.source else None,
            "dataset": dataset.name,
            "data_options": dict(origin.options) if origin is not None else {},
            "split": split,
            "projection": bool(projection),
        }
        write_index(out, vectors, items, info)
        files.append(out / INDEX_FILE)
    return Embeddings(vectors, items, files)


def require_pyarrow() -> None:
    """:class:`InputError` when pyarrow (Parquet) is not installed."""
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("Parquet needs pyarrow: pip install pyarrow") from None


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
    import numpy as np

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
        import numpy as np

        vectors = np.ascontiguousarray(queries, dtype=np.float32).copy()
        if vectors.ndim != 2 or vectors.shape[1] != self.index.d:
            raise InputError(f"queries must be [Q, {self.index.d}], got {vectors.shape}")
        faiss.normalize_L2(vectors)
        return self.index.search(vectors, min(k, self.index.ntotal))


def open_index(folder: str | os.PathLike) -> SearchIndex:
    """Read an index folder written by :func:`write_index` (``clinfonce embed --index``)."""
    import faiss
    import pandas as pd

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


def nearest_images(folder: str | os.PathLike, image: str | os.PathLike, k: int = 10) -> pd.DataFrame:
    """The ``k`` indexed images nearest to an image file, by cosine similarity of their embeddings.

    The query is embedded by the index's own encoder and preprocessing (the checkpoint in ``index.json``).

    Returns:
        The rows of ``index.csv`` with ``rank`` (1 = nearest) first and ``similarity`` (rounded to 4
        places), nearest first.

    Raises:
        InputError: not an index folder, its encoder is gone, an unreadable query image.
    """
    from clinfonce.encoder import Encoder

    index = open_index(folder)
    checkpoint = Path(index.info["checkpoint"])
    if not checkpoint.exists():
        raise InputError(f"{folder}: the encoder it was made with, {checkpoint}, is gone")
    query = Encoder.load(checkpoint).embed([image], projection=bool(index.info.get("projection")))
    scores, positions = index.search(query, k)
    found = index.items.iloc[positions[0]].assign(similarity=scores[0].round(4)).reset_index(drop=True)
    found.insert(0, "rank", range(1, len(found) + 1))
    return found


def draw_neighbours(
    out: str | os.PathLike, query: str | os.PathLike, found: pd.DataFrame, folder: str | os.PathLike
) -> None:
    """A PNG of the query image and its neighbours (``found``: from :func:`nearest_images` on the index in
    ``folder``), each titled with its rank, similarity and class; the images come from the indexed dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinfonce.data.files import open_image
    from clinfonce.data.registry import load_dataset, source
    from clinfonce.typed import fields_of

    info = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))
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
