"""UT-Zappos50K (Yu & Grauman, CVPR 2014) in its published layout.

Files (as unpacked from ``ut-zap50k-images-square.zip`` or ``ut-zap50k-images.zip`` and
``ut-zap50k-data.zip``; nothing is downloaded)::

    ROOT/ut-zap50k-images-square/<Category>/<SubCategory>/<Brand>/<ProductID>.<ColorID>.jpg
         (or ut-zap50k-images/, same tree; 50,025 images, 4 categories, 21 sub-categories)
    ROOT/ut-zap50k-data/meta-data-bin.csv   CID, then 0/1 columns "<Enum>.<Value>"
    ROOT/ut-zap50k-data/meta-data.csv       CID, Category, SubCategory, HeelHeight, Insole, Closure,
                                            Gender, Material, ToeStyle (values may be "a;b" lists)

- Label: the 21 sub-categories, named ``"<Category>/<SubCategory>"`` from the first two folder levels of the
  path (``"Shoes/Oxfords"``). SubCategory alone is ambiguous ("Flat" is a sandal type, "Flats" a shoe type).
- The image's CID is its file name without the extension, dots turned to dashes
  (``100627.72.jpg`` -> ``100627-72``); the meta-data rows are matched by CID (no ``.mat`` file is read).
- Auxiliary information: the binary attributes of ``meta-data-bin.csv`` (preferred; in the published file
  126 columns in the groups HeelHeight, Insole, Closure, Gender, Material and ToeStyle), leaving out the
  ``Category.*`` and ``SubCategory.*`` one-hots, which encode the label. Column names are kept as
  published. Without ``meta-data-bin.csv``, ``meta-data.csv`` is expanded the same way: one 0/1 column
  ``"<Enum>.<value>"`` per value (``;``-separated lists give several), an empty cell giving 0s. The paper
  ranks these attributes by entropy; stage 1 (:func:`~clinfonce.clusters.rank_attributes`) does that.
  Images without a meta-data row have missing (NaN) attributes; a repeated CID uses its first row. Both
  counts are in ``aux.notes``.
- Split: the paper's random 70/30 split, drawn here per sub-category (stratified), seeded: ``test_fraction``
  0.3, ``seed`` 0 (rule: :func:`~clinfonce.data.splits.stratified_pick`).
- Normalisation: the authors' statistics (mean 0.8342, 0.8142, 0.8081; std 0.2804, 0.3014, 0.3072).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import file_dataset
from clinfonce.data.options import IMAGE_SIZE_HELP, FileOptions, check_fraction
from clinfonce.data.paths import existing_dir, is_image_file, visible_dirs
from clinfonce.data.splits import stratified_pick
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError

IMAGE_DIRS = ("ut-zap50k-images-square", "ut-zap50k-images")
META_DIR = "ut-zap50k-data"
LABEL_GROUPS = ("Category", "SubCategory")
ENUM_COLUMNS = ("HeelHeight", "Insole", "Closure", "Gender", "Material", "ToeStyle")
MEAN = (0.8342, 0.8142, 0.8081)
STD = (0.2804, 0.3014, 0.3072)


@dataclass(kw_only=True)
class UtzapposOptions(FileOptions):
    """Options of UT-Zappos50K."""

    root: str = field(
        metadata={"help": "the folder of ut-zap50k-images-square/ (or ut-zap50k-images/) and ut-zap50k-data/"}
    )
    image_size: int = field(default=128, metadata={"help": IMAGE_SIZE_HELP})  # near the images' 136 px
    images_dir: str | None = field(
        default=None,
        metadata={
            "help": "the image tree, if elsewhere (relative to root or absolute); null: found under root"
        },
    )
    meta_dir: str | None = field(
        default=None,
        metadata={
            "help": "the folder of meta-data-bin.csv / meta-data.csv; null: root/ut-zap50k-data, else root"
        },
    )
    test_fraction: float = field(
        default=0.3, metadata={"help": "fraction of each sub-category in the test split (the paper: 0.3)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("test_fraction", self.test_fraction)


def load(options: UtzapposOptions, skip_bad: bool = False) -> ImageDataset:
    """UT-Zappos50K: 21 sub-category labels, binary meta-data attributes, a seeded 70/30 split.

    Args:
        options: the folders, the image size, the splits (see :class:`UtzapposOptions`).
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.

    Raises:
        InputError: no image tree or no meta-data file, a malformed meta-data table, bad images.
    """
    root = existing_dir(options.root, "UT-Zappos50K folder")
    image_root = _image_root(root, options.images_dir)
    # paths are relative to root, or to the image tree itself when it lies elsewhere
    base = root if image_root.resolve().is_relative_to(root.resolve()) else image_root
    table = _list_images(base, image_root)
    attributes, notes = _attributes(root, options.meta_dir, table["cid"])
    table = pd.concat([table, attributes], axis=1)
    test = stratified_pick(table["class"], table["path"], options.test_fraction, options.seed)
    table["split"] = np.where(test, "test", "train")
    aux = AuxInfo(attributes=tuple(attributes.columns), notes=notes)
    return file_dataset("utzappos", table, base, options, mean=MEAN, std=STD, aux=aux, skip_bad=skip_bad)


def cid_of(file_name: str) -> str:
    """The CID of an image file name: ``"100627.72.jpg"`` -> ``"100627-72"``."""
    return "-".join(file_name.split(".")[:-1])


def _image_root(root: Path, images_dir: str | os.PathLike | None) -> Path:
    if images_dir is not None:
        path = root / images_dir  # an absolute images_dir replaces root
        if not path.is_dir():
            raise InputError(f"{path}: no such UT-Zappos50K image folder")
        return path
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return root


def _list_images(root: Path, image_root: Path) -> pd.DataFrame:
    """Every ``<Category>/<SubCategory>/<Brand>/<file>`` image (exactly that depth) under ``image_root``."""
    rows = []
    for category in visible_dirs(image_root):
        if category.name == META_DIR:
            continue
        for sub in visible_dirs(category):
            for brand in visible_dirs(sub):
                with os.scandir(brand) as entries:
                    names = sorted(e.name for e in entries if is_image_file(e.name))
                for name in names:
                    rows.append(
                        (
                            (brand / name).relative_to(root).as_posix(),
                            f"{category.name}/{sub.name}",
                            category.name,
                            sub.name,
                            brand.name,
                            cid_of(name),
                        )
                    )
    if not rows:
        raise InputError(
            f"{image_root}: no images in the UT-Zappos50K layout <Category>/<SubCategory>/<Brand>/<file>.jpg "
            f"(expected under {' or '.join(IMAGE_DIRS)})"
        )
    return pd.DataFrame(rows, columns=["path", "class", "category", "subcategory", "brand", "cid"])


def _meta_file(root: Path, meta_dir: str | os.PathLike | None) -> Path:
    if meta_dir is not None:
        folders = [Path(meta_dir) if Path(meta_dir).is_absolute() else root / meta_dir]
    else:
        folders = [root / META_DIR, root]
    for folder in folders:
        for name in ("meta-data-bin.csv", "meta-data.csv"):
            if (folder / name).is_file():
                return folder / name
    raise InputError(
        f"no UT-Zappos50K meta-data: neither meta-data-bin.csv nor meta-data.csv in "
        f"{' or '.join(map(str, folders))} (unpack ut-zap50k-data.zip there)"
    )


def _attributes(root: Path, meta_dir: str | os.PathLike | None, cids: pd.Series) -> tuple[pd.DataFrame, str]:
    """Binary attribute columns aligned with ``cids`` (NaN where an image has no meta-data row)."""
    path = _meta_file(root, meta_dir)
    meta = read_table(path)
    meta.columns = [str(column).strip() for column in meta.columns]
    require_columns(meta, ["CID"], path)
    meta["CID"] = meta["CID"].astype(str).str.strip()
    binary = _binary_columns(meta, path) if path.name == "meta-data-bin.csv" else _expand_enums(meta, path)
    repeated = int(meta["CID"].duplicated().sum())
    binary.index = meta["CID"]
    binary = binary[~binary.index.duplicated(keep="first")]
    aligned = binary.reindex(pd.Index(cids.astype(str)))
    unmatched = int((~pd.Index(cids.astype(str)).isin(binary.index)).sum())
    aligned = aligned.astype(np.float32 if aligned.isna().to_numpy().any() else np.uint8)
    aligned = aligned.reset_index(drop=True)
    notes = (
        f"{aligned.shape[1]} binary attributes from {path.name} (Category/SubCategory columns left out: they "
        f"are the label); {unmatched} image(s) without a meta-data row (attributes missing); "
        f"{repeated} repeated CID row(s) ignored (first kept)"
    )
    return aligned, notes


def _binary_columns(meta: pd.DataFrame, path: Path) -> pd.DataFrame:
    columns = [c for c in meta.columns if c != "CID" and c.split(".", 1)[0] not in LABEL_GROUPS]
    if not columns:
        raise InputError(f"{path}: no attribute columns besides CID, Category.* and SubCategory.*")
    frame = meta[columns].apply(pd.to_numeric, errors="coerce")
    for column in columns:
        values = frame[column]
        bad = ~(values.isin([0, 1]) | values.isna()) | (values.isna() & meta[column].notna())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{path}: row {row}, column {column!r}: {meta[column].iloc[row]!r} is not 0 or 1"
            )
    return frame.astype(np.float32)


def _expand_enums(meta: pd.DataFrame, path: Path) -> pd.DataFrame:
    enums = [c for c in meta.columns if c != "CID" and c not in LABEL_GROUPS]
    if not enums:
        raise InputError(f"{path}: no attribute columns (expected {', '.join(ENUM_COLUMNS)})")
    blocks: dict[str, np.ndarray] = {}
    for column in enums:
        cells: Sequence[list[str]] = [
            [] if pd.isna(cell) else [v.strip() for v in str(cell).split(";") if v.strip()]
            for cell in meta[column]
        ]
        for value in sorted({v for cell in cells for v in cell}):
            blocks[f"{column}.{value}"] = np.array([value in cell for cell in cells], dtype=np.float32)
    if not blocks:
        raise InputError(f"{path}: the attribute columns {enums} hold no values")
    return pd.DataFrame(blocks, index=meta.index)
