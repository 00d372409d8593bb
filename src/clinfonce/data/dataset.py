"""The dataset contract every source (built-in, folder, table, the paper's datasets) fulfils.

A dataset is a metadata table with one row per image plus a way to load image ``i`` as a fixed-size
``uint8 [C, H, W]`` tensor. The table always has:

- ``label``: int in ``0..n_classes-1`` (remapped from whatever the source uses, in sorted order of the
  source's class names, so ids never depend on file order), or -1 where a source has no label;
- ``split``: ``"train"``, ``"val"`` or ``"test"`` (stored as a categorical of :data:`SPLITS`: one byte a row);
- ``path``: for file-backed sources, the image path relative to ``root`` (used in outputs and errors);

and any auxiliary columns the source provides, described by :class:`AuxInfo`. Training code indexes the
dataset by table row; cluster ids live outside the dataset (they change between epochs for K-means).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfonce.errors import InputError

#: ``loader(row) -> uint8 [C, H, W]`` for table row ``row``.
ImageLoader = Callable[[int], torch.Tensor]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class AuxInfo:
    """Which auxiliary information a dataset carries, for stage 1.

    Attributes:
        attributes: discrete attribute columns of the table (bool, 0/1 or categorical).
        tags: tag columns (lists or delimited strings).
        hierarchy: class name -> parent(s), over the names in ``class_names`` and their ancestors, or
            ``"wordnet"`` when class names are WordNet ids to be resolved by :class:`~clinfonce.clusters.WordNet`.
        notes: anything a report must say about the auxiliary information (e.g. "hand-made grouping").
    """

    attributes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    hierarchy: Mapping[str, Sequence[str] | str | None] | str | None = None
    notes: str = ""


@dataclass(frozen=True)
class ImageInput:
    """How a dataset's images are decoded: what an image from elsewhere must go through to look like them.

    Attributes:
        image_size: ``(H, W)`` in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        resize: ``center_crop`` (shorter side to size, then a centre crop) or ``stretch`` (a plain resize).
    """

    image_size: tuple[int, int]
    channels: int
    resize: str


@dataclass(frozen=True)
class DataOrigin:
    """What a dataset was loaded from (set by :func:`~clinfonce.data.registry.load_dataset`): the config's
    ``data`` section that describes it.

    Attributes:
        name: the registered dataset.
        options: its resolved options (every key, defaults filled in), as plain data.
        skip_bad: whether unreadable images were left out.
    """

    name: str
    options: Mapping[str, Any]
    skip_bad: bool


@dataclass
class ImageDataset:
    """Images plus their metadata.

    Attributes:
        name: short name, e.g. ``"shapes"``, ``"cub200"``.
        table: one row per image (see the module docstring for the required columns).
        class_names: ``[n_classes]``; ``class_names[label]`` is the source's name of the class.
        loader: loads table row ``i`` as ``uint8 [C, H, W]`` (C = 1 or 3), all images the same size.
        image_size: ``(H, W)`` of what ``loader`` returns.
        channels: C of what ``loader`` returns (1 or 3).
        resize: how ``loader`` brought an image of another shape to ``image_size`` (``center_crop`` or
            ``stretch``).
        mean, std: per-channel normalisation statistics of the dataset in [0, 1] units (3 values).
        aux: the auxiliary information available for stage 1.
        root: the directory file paths are relative to (None for in-memory data).
        skipped: files left out because they could not be read (path -> reason), with ``--skip-bad``.
        origin: what it was loaded from; None for a dataset built by hand (it cannot train a run, whose
            ``config.yaml`` must describe its data).
    """

    name: str
    table: pd.DataFrame
    class_names: list[str]
    loader: ImageLoader
    image_size: tuple[int, int]
    channels: int
    resize: str = "stretch"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    aux: AuxInfo = field(default_factory=AuxInfo)
    root: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    origin: DataOrigin | None = None

    def __post_init__(self) -> None:
        for column in ("label", "split"):
            if column not in self.table.columns:
                raise ValueError(f"dataset {self.name!r}: the table lacks the {column!r} column")
        # three values in every row: one-byte codes, not a string per row (found by comparison: converting
        # a column of strings to a categorical makes a Python string per row first)
        split = self.table["split"]
        codes = np.full(len(split), -1, dtype=np.int8)
        for code, name in enumerate(SPLITS):
            codes[(split == name).to_numpy(dtype=bool, na_value=False)] = code
        if (codes < 0).any():
            row = int(np.argmax(codes < 0))
            value = split.iloc[row]
            what = "no split" if pd.isna(value) else f"split {value!r}, not one of {', '.join(SPLITS)}"
            raise InputError(f"dataset {self.name!r}: row {row} has {what}")
        self.table = self.table.assign(split=pd.Categorical.from_codes(codes, categories=SPLITS))
        labels = self.table["label"].to_numpy()
        if len(labels) and (labels.min() < -1 or labels.max() >= len(self.class_names)):
            raise ValueError(f"dataset {self.name!r}: labels outside -1..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_input(self) -> ImageInput:
        """How the loader decodes an image."""
        return ImageInput(tuple(self.image_size), self.channels, self.resize)

    def rows(self, split: str) -> np.ndarray:
        """``int64 [n]``: table rows of one split, in table order."""
        return np.flatnonzero((self.table["split"] == split).to_numpy()).astype(np.int64)


def encode_labels(
    names: Sequence[object], all_classes: Sequence[object] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Map class names to ids ``0..C-1`` in sorted order of the names (as strings); missing -> -1.

    Args:
        names: ``[N]`` class name per row; ``None`` / NaN for no label.
        all_classes: the source's full class list when it declares one (CUB's ``classes.txt``, CIFAR's
            meta file), so ids stay the same even when a class has no row (e.g. all its files were
            skipped). Default: the classes present in ``names``.

    Returns:
        ``(int64 [N] labels, [C] class names)``.

    Raises:
        InputError: a name is not in ``all_classes``.
    """
    # each distinct name is converted once (missing ones get code -1), not each row
    codes, uniques = pd.factorize(np.asarray(names, dtype=object))
    texts = [str(name) for name in uniques]
    present = set(texts)
    classes = sorted(present if all_classes is None else {str(name) for name in all_classes})
    unknown = sorted(present - set(classes))
    if unknown:
        raise InputError(f"class(es) {unknown[:5]} are not in the source's class list")
    index = {name: i for i, name in enumerate(classes)}
    ids = np.array([index[text] for text in texts] + [-1], dtype=np.int64)
    return ids[codes], classes


def is_missing(value: object) -> bool:
    """Whether a table cell is a missing value: None, NaN or ``pd.NA``."""
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def array_loader(images: np.ndarray) -> ImageLoader:
    """A loader over in-memory images ``uint8 [N, H, W]`` or ``[N, H, W, C]``; returns ``[C, H, W]``."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images [N, H, W(, C)], got {images.dtype} {images.shape}")
    tensor = torch.from_numpy(images if images.ndim == 4 else images[..., None]).permute(0, 3, 1, 2)

    def load(row: int) -> torch.Tensor:
        return tensor[row]

    return load
