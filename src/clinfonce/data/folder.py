"""Generic file-backed datasets: an ImageFolder tree, or a metadata table (CSV / TSV / Parquet) of paths.

Both read from local disk only and return an :class:`~clinfonce.data.dataset.ImageDataset` whose table has
``path`` (relative to ``root``, ``/``-separated), ``label`` (class names sorted, ids ``0..C-1``; -1 where a
row has no label) and ``split``. Every image is opened once up front (see
:func:`~clinfonce.data.files.screen_files`): the first bad file is an error naming it, unless
``skip_bad=True`` leaves bad files out and lists them in ``ImageDataset.skipped``.

Seeded splits (:func:`stratified_pick`), used here and by the paper's datasets:

- within each stratum (class), rows are ordered by their path, then permuted by a generator seeded with
  ``(seed, crc32(class name))``, so a class's split depends only on the seed and its own files;
- ``round(n * fraction)`` rows of a class of ``n`` are picked, at most ``n - 1``: every class keeps at
  least one training image;
- a test split is drawn first (when the source has none); a validation split (``val_fraction``, default
  0) is then drawn from the remaining training rows the same way.
"""

from __future__ import annotations

import os
import posixpath
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torchvision.datasets.folder import IMG_EXTENSIONS

from clinfonce.data.dataset import AuxInfo, ImageDataset, encode_labels, is_missing
from clinfonce.data.files import (
    DEFAULT_MAX_PIXELS,
    FileImageLoader,
    check_image_options,
    screen_files,
    size_pair,
)
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError

#: Image file extensions (torchvision's ``IMG_EXTENSIONS``), compared case-insensitively.
IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
#: ImageNet statistics, the default normalisation of generic image folders and tables.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Test fraction of the seeded stratified split when a folder or table has no split of its own.
DEFAULT_TEST_FRACTION = 0.2
RESERVED_COLUMNS = ("path", "label", "split")
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
WNID = re.compile(r"^n\d{8}$")


def is_image_file(name: str) -> bool:
    """Whether a file name has an image extension (and is not hidden, i.e. does not start with ".")."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def stratified_pick(
    strata: Sequence[object] | np.ndarray,
    keys: Sequence[str] | np.ndarray,
    fraction: float,
    seed: int,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Pick a seeded, stratified ``fraction`` of rows (rules in the module docstring).

    Args:
        strata: ``[N]`` the stratum (class) of each row; missing values form one stratum.
        keys: ``[N]`` a stable sort key of each row (its path), so the pick ignores file-listing order.
        fraction: in ``[0, 1)``.
        seed: the seed.
        eligible: ``bool [N]`` rows that may be picked (default: all).

    Returns:
        ``bool [N]``: the picked rows.
    """
    fraction = float(fraction)
    if not 0 <= fraction < 1:
        raise InputError(f"a split fraction must be in [0, 1), got {fraction}")
    n = len(keys)
    picked = np.zeros(n, dtype=bool)
    rows = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    if fraction == 0 or len(rows) == 0:
        return picked
    names = pd.Series(np.asarray(strata, dtype=object)[rows]).map(lambda v: "" if pd.isna(v) else str(v))
    codes, uniques = pd.factorize(names, sort=True)
    order = np.lexsort((np.asarray(keys, dtype=str)[rows], codes))
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        name = uniques[codes[group[0]]]
        count = len(group)
        take = min(int(np.floor(count * fraction + 0.5)), count - 1)
        if take <= 0:
            continue
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
        picked[rows[group[rng.permutation(count)[:take]]]] = True
    return picked


def with_validation(
    split: pd.Series, labels: np.ndarray, keys: np.ndarray, fraction: float, seed: int
) -> pd.Series:
    """``split`` with a stratified ``fraction`` of each class's training rows moved to ``"val"``.

    Args:
        split: ``[N]`` split names.
        labels: ``[N]`` the strata (class ids).
        keys: ``[N]`` strings that order the rows within a class before the seeded draw (e.g. paths).
        fraction: share of each class's training rows to move (0: none).
        seed: seed of the draw (see :func:`stratified_pick`).
    """
    values = split.to_numpy(dtype=object).copy()
    if fraction:
        values[stratified_pick(labels, keys, fraction, seed, values == "train")] = "val"
    return pd.Series(values, dtype=object)


def normalise_split(value: object, where: str) -> str:
    """``"train"`` / ``"val"`` / ``"test"`` from a split cell (case-insensitive; training, validation, valid,
    dev and testing are accepted too); anything else is an :class:`InputError` naming ``where``."""
    text = "" if is_missing(value) else str(value)
    split = _SPLIT_NAMES.get(text.strip().lower())
    if split is None:
        raise InputError(f"{where}: split {value!r} is not one of train, val, test")
    return split


def file_dataset(
    name: str,
    table: pd.DataFrame,
    root: Path,
    *,
    image_size: int | tuple[int, int],
    channels: int = 3,
    resize: str = "center_crop",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    aux: AuxInfo | None = None,
    skip_bad: bool = False,
    check_files: bool = True,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    val_fraction: float = 0.0,
    seed: int = 0,
    source: str | None = None,
    rows: Sequence[object] | None = None,
    all_classes: Sequence[str] | None = None,
) -> ImageDataset:
    """Finish a file-backed dataset: screen the files, encode labels, carve a validation split.

    Args:
        name: the dataset's name.
        table: one row per image with ``path`` (relative to ``root``), ``class`` (class name, or
            None/NaN for no label), ``split`` and any auxiliary columns. ``class`` is replaced by ``label``.
        root: the directory paths are relative to.
        image_size, channels, resize, max_pixels: see :class:`~clinfonce.data.files.FileImageLoader`.
        mean, std: normalisation statistics.
        aux: the auxiliary information.
        skip_bad, check_files, workers: see :func:`~clinfonce.data.files.screen_files`.
        val_fraction, seed: a stratified validation split drawn from the training rows.
        source, rows: the metadata file and the row names of ``table``, for error messages.
        all_classes: the source's full class list, if it declares one (see :func:`~clinfonce.data.dataset.encode_labels`).
    """
    check_image_options(channels, resize)  # before the slow file screening
    size = size_pair(image_size)
    table = table.reset_index(drop=True)
    keep, skipped = screen_files(
        root,
        table["path"].tolist(),
        skip_bad=skip_bad,
        check=check_files,
        rows=rows,
        source=source,
        workers=workers,
        max_pixels=max_pixels,
    )
    if not keep.all():
        table = table.loc[keep].reset_index(drop=True)
    if table.empty:
        raise InputError(f"{source or root}: no readable images ({len(skipped)} bad file(s) left out)")
    labels, class_names = encode_labels(table["class"].tolist(), all_classes)
    table = table.drop(columns="class")
    table.insert(1, "label", labels)
    table["split"] = with_validation(table["split"], labels, table["path"].to_numpy(str), val_fraction, seed)
    return ImageDataset(
        name=name,
        table=table,
        class_names=class_names,
        loader=FileImageLoader(root, table["path"].tolist(), size, channels, resize, max_pixels),
        image_size=size,
        mean=_triple(mean, "mean"),
        std=_triple(std, "std"),
        aux=aux or AuxInfo(),
        root=root,
        skipped=skipped,
    )


def imagefolder_dataset(
    *,
    root: str | os.PathLike,
    image_size: int | tuple[int, int] = 224,
    channels: int = 3,
    resize: str = "center_crop",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = 0.0,
    seed: int = 0,
    hierarchy: str | Mapping[str, Sequence[str] | str | None] | None = None,
    skip_bad: bool = False,
    check_files: bool = True,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ImageDataset:
    """Images in torchvision's ImageFolder layout: ``ROOT/<class>/**/<image>``; label = class folder name.

    Layout and splits:

    - if ``ROOT`` has a ``train/`` folder and a ``val/`` and/or ``test/`` folder, each holding class
      folders (sub-folders with images), those are the splits: ``train/`` -> train, ``test/`` -> test,
      and ``val/`` -> val when ``test/`` exists, else ``val/`` -> **test** (as for ImageNet, whose
      ``val`` set is the evaluation set);
    - otherwise every sub-folder of ``ROOT`` is a class, and a seeded stratified ``test_fraction``
      (default 0.2) of each class is the test split (module docstring for the rule).

    Image files are those with an extension in torchvision's ``IMG_EXTENSIONS`` (case-insensitive),
    searched recursively within a class folder (symbolic links to class folders are followed, links to
    sub-folders inside them are not); hidden files and folders (names starting with ".") are ignored.

    Args:
        root: the dataset folder.
        image_size: side of the square images returned (or ``(H, W)``).
        channels: 3 (RGB) or 1 (grayscale).
        resize: ``"center_crop"`` (shorter side to the size, centre crop) or ``"stretch"``.
        test_fraction: test fraction when the folder has no split folders.
        val_fraction: fraction of each class's training images moved to a validation split.
        seed: seed of the splits.
        hierarchy: ``"wordnet"`` when the class folders are WordNet ids (``n01440764``), or a parents map
            (class -> parent(s)) over the class names; ``None``: no hierarchy.
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.
        check_files: open every image up front (needed by ``skip_bad``).
        workers: threads for the up-front check.
        max_pixels: decompression-bomb limit of one image.
        mean, std: normalisation statistics (default: ImageNet's).

    Raises:
        InputError: the folder is missing or has no class folder, a class folder has no image,
            ``train/`` holds class folders but ``val/`` / ``test/`` does not, a bad image (unless
            ``skip_bad``), class names that are not WordNet ids with ``hierarchy="wordnet"``.
    """
    root = existing_dir(root, "image folder")
    layout = _split_folders(root)
    rows: list[tuple[str, str, str]] = []
    if layout:
        for folder, split in layout.items():
            rows += [(path, name, split) for path, name in _class_folder_images(root, root / folder)]
    else:
        rows = [(path, name, "train") for path, name in _class_folder_images(root, root)]
    table = pd.DataFrame(rows, columns=["path", "class", "split"])
    if not layout and test_fraction:
        test = stratified_pick(table["class"], table["path"], test_fraction, seed)
        table.loc[test, "split"] = "test"
    classes = sorted(set(table["class"]))
    aux = AuxInfo(hierarchy=_check_hierarchy(hierarchy, classes, str(root)))
    return file_dataset(
        "imagefolder",
        table,
        root,
        image_size=image_size,
        channels=channels,
        resize=resize,
        mean=mean,
        std=std,
        aux=aux,
        skip_bad=skip_bad,
        check_files=check_files,
        workers=workers,
        max_pixels=max_pixels,
        val_fraction=val_fraction,
        seed=seed,
    )


def table_dataset(
    *,
    table_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    path_col: str = "path",
    label_col: str | None = "auto",
    split_col: str | None = "auto",
    attributes: Sequence[str] = (),
    tags: Sequence[str] = (),
    hierarchy: str | None = None,
    hierarchy_col: str | None = None,
    hierarchy_sep: str = "/",
    image_size: int | tuple[int, int] = 224,
    channels: int = 3,
    resize: str = "center_crop",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = 0.0,
    seed: int = 0,
    skip_bad: bool = False,
    check_files: bool = True,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ImageDataset:
    """Images listed in a metadata table (``.csv``, ``.tsv``, whitespace ``.txt`` or ``.parquet``).

    Each row is one image: ``path_col`` holds its path relative to ``root``. A path that leaves ``root``
    (absolute, ``..``, or a symbolic link pointing outside) is an error naming the row; so is a missing
    image (unless ``skip_bad``).

    Args:
        table_path: the metadata table.
        root: the directory image paths are relative to (default: the table's directory).
        path_col: the column of image paths.
        label_col: the column of class names (the downstream label); ``None``: unlabelled (label -1);
            ``"auto"`` (default): the column ``label`` if the table has one, else unlabelled. Integral
            numbers are class names too (``"3"``), sorted as text like all class names.
        split_col: the column of splits (train / val / test; also training, validation, valid, dev,
            testing; case-insensitive). ``None``: a seeded split with ``test_fraction``, stratified by
            label; ``"auto"`` (default): the column ``split`` if the table has one, else ``None``.
        attributes: auxiliary attribute columns (copied into the dataset's table).
        tags: auxiliary tag columns (lists or delimited strings), copied as well.
        hierarchy: ``"wordnet"`` when the labels are WordNet ids.
        hierarchy_col: a column giving, per row, the ancestors of the row's class, root first, separated by
            ``hierarchy_sep`` (a single name is the parent). Every row of a class must agree.
        hierarchy_sep: separator of ``hierarchy_col``.
        image_size, channels, resize, max_pixels: see :func:`imagefolder_dataset`.
        test_fraction: test fraction when there is no ``split_col`` (0: everything is train).
        val_fraction, seed: a stratified validation split drawn from the training rows; the seed.
        skip_bad, check_files, workers: see :func:`imagefolder_dataset`.
        mean, std: normalisation statistics (default: ImageNet's).

    Raises:
        InputError: the table cannot be read; a named column is absent; an auxiliary column is named
            ``path``, ``label`` or ``split``; a missing / escaping path; a bad split value; inconsistent
            hierarchy values; a bad image (unless ``skip_bad``).
    """
    table_path = Path(table_path)
    source = str(table_path)
    frame = read_table(table_path, tag_columns=list(tags))
    root = existing_dir(table_path.parent if root is None else root, "image root")
    attributes, tags = list(attributes), list(tags)
    label_col = _auto_column(label_col, "label", frame)
    split_col = _auto_column(split_col, "split", frame)
    named = [path_col, *([label_col] if label_col else []), *([split_col] if split_col else [])]
    require_columns(frame, [*named, *attributes, *tags, *([hierarchy_col] if hierarchy_col else [])], source)
    clash = sorted(set(RESERVED_COLUMNS) & {*attributes, *tags})
    if clash:
        raise InputError(f"{source}: auxiliary column(s) {clash} clash with the dataset's own columns")
    if hierarchy is not None and hierarchy_col is not None:
        raise InputError("give either hierarchy='wordnet' or hierarchy_col, not both")
    real_root = os.path.realpath(root)
    paths = [
        safe_path(root, real_root, value, f"{source}: row {i}") for i, value in enumerate(frame[path_col])
    ]
    classes = _label_names(frame[label_col]) if label_col else [None] * len(frame)
    table = pd.DataFrame({"path": paths, "class": pd.Series(classes, dtype=object)})
    if split_col:
        table["split"] = [
            normalise_split(value, f"{source}: row {i}, column {split_col!r}")
            for i, value in enumerate(frame[split_col])
        ]
    else:
        table["split"] = "train"
        if test_fraction:
            test = stratified_pick(table["class"], table["path"], test_fraction, seed)
            table.loc[test, "split"] = "test"
    for column in dict.fromkeys([*attributes, *tags]):
        table[column] = frame[column].reset_index(drop=True)
    labelled = sorted({name for name in classes if name is not None})
    if hierarchy_col:
        parents: str | dict[str, str | None] | None = _hierarchy_from_column(
            classes, frame[hierarchy_col], hierarchy_sep, source, hierarchy_col
        )
    else:
        parents = _check_hierarchy(hierarchy, labelled, source)
    aux = AuxInfo(
        attributes=tuple(dict.fromkeys(attributes)), tags=tuple(dict.fromkeys(tags)), hierarchy=parents
    )
    return file_dataset(
        "table",
        table,
        root,
        image_size=image_size,
        channels=channels,
        resize=resize,
        mean=mean,
        std=std,
        aux=aux,
        skip_bad=skip_bad,
        check_files=check_files,
        workers=workers,
        max_pixels=max_pixels,
        val_fraction=val_fraction,
        seed=seed,
        source=source,
        rows=list(range(len(table))),
    )


def existing_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; :class:`InputError` naming ``what`` if it is missing or not a directory."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what} (nothing is downloaded: give the local copy)")
    if not path.is_dir():
        raise InputError(f"{path}: the {what} is not a directory")
    return path


def find_dataset_dir(root: Path, name: str, marker: str, archive: str) -> Path:
    """``root`` or ``root/name``, whichever holds the file ``marker``: a dataset's folder, given either it or
    the folder its archive was extracted into. :class:`InputError` naming ``archive`` otherwise."""
    for candidate in (root, root / name):
        if (candidate / marker).is_file():
            return candidate
    raise InputError(
        f"{root}: no {name}/ folder (with {marker}); extract {archive} here (nothing is downloaded)"
    )


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` (links followed), hidden ones excluded, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(
            (Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()), key=lambda p: p.name
        )


def iter_images(folder: Path) -> Iterator[Path]:
    """Every image file under ``folder``, recursively, hidden folders skipped, in sorted order."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(current) / f for f in sorted(files) if is_image_file(f))


def _has_images(folder: Path) -> bool:
    return next(iter_images(folder), None) is not None


def _is_class_layout(folder: Path) -> bool:
    """A folder of class folders: it has sub-folders with images and no image files of its own."""
    with os.scandir(folder) as entries:
        if any(e.is_file() and is_image_file(e.name) for e in entries):
            return False
    return any(_has_images(sub) for sub in visible_dirs(folder))


def _split_folders(root: Path) -> dict[str, str]:
    """Split folder -> split name when ``root`` has train/ and val/ or test/ in class-folder layout."""
    present = {name for name in ("train", "val", "test") if (root / name).is_dir()}
    if "train" not in present or not present & {"val", "test"}:
        return {}
    if not _is_class_layout(root / "train"):
        return {}
    for name in sorted(present - {"train"}):
        if not _is_class_layout(root / name):
            raise InputError(
                f"{root / name}: train/ holds class folders but {name}/ does not (a flat ImageNet val folder? "
                "the imagenet100 dataset reads it with LOC_val_solution.csv)"
            )
    layout = {"train": "train"}
    if "test" in present:
        layout["test"] = "test"
        if "val" in present:
            layout["val"] = "val"
    else:
        layout["val"] = "test"
    return layout


def _class_folder_images(root: Path, folder: Path) -> list[tuple[str, str]]:
    """``[(path relative to root, class name)]`` for every image under the class folders of ``folder``."""
    found: list[tuple[str, str]] = []
    classes = visible_dirs(folder)
    if not classes:
        raise InputError(f"{folder}: no class folders (expected <class>/<image> under it)")
    for class_dir in classes:
        images = [image.relative_to(root).as_posix() for image in iter_images(class_dir)]
        if not images:
            raise InputError(
                f"{class_dir}: a class folder without images (extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        found += [(path, class_dir.name) for path in images]
    return found


def _check_hierarchy(
    hierarchy: str | Mapping[str, Sequence[str] | str | None] | None, classes: Sequence[str], source: str
) -> str | Mapping[str, Sequence[str] | str | None] | None:
    if hierarchy is None:
        return None
    if isinstance(hierarchy, str):
        if hierarchy != "wordnet":
            raise InputError(f"unknown hierarchy {hierarchy!r}; use 'wordnet' or a parents map")
        bad = [name for name in classes if not WNID.match(name)]
        if bad:
            raise InputError(
                f"{source}: hierarchy='wordnet' needs classes named by WordNet ids (n + 8 digits); "
                f"{len(bad)} are not, e.g. {bad[0]!r}"
            )
        return "wordnet"
    if not isinstance(hierarchy, Mapping):
        raise InputError(f"hierarchy must be 'wordnet' or a mapping, got {type(hierarchy).__name__}")
    return dict(hierarchy)


def _label_names(column: pd.Series) -> list[str | None]:
    """Class names of a label column: text; integral numbers without a trailing ``.0``; NaN -> None."""
    values = column
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and (finite == np.round(finite)).all():
            values = values.astype("Int64")
    return [None if pd.isna(value) else str(value) for value in values.tolist()]


def _auto_column(name: str | None, default: str, frame: pd.DataFrame) -> str | None:
    """``name``, with ``"auto"`` meaning ``default`` if ``frame`` has that column, else ``None``."""
    if name != "auto":
        return name
    return default if default in frame.columns else None


def safe_path(root: Path, real_root: str, value: object, where: str) -> str:
    """The normalised relative path of a table cell; :class:`InputError` if it is empty or leaves root."""
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        raise InputError(f"{where}: missing image path ({value!r})")
    text = str(value).strip().replace("\\", "/")
    if text.startswith("/") or os.path.isabs(text) or re.match(r"^[A-Za-z]:", text):
        raise InputError(f"{where}: path {value!r} is absolute; paths must be relative to {root}")
    normal = posixpath.normpath(text)
    if normal == ".":
        raise InputError(f"{where}: path {value!r} names the image root itself, not an image")
    if normal == ".." or normal.startswith("../"):
        raise InputError(f"{where}: path {value!r} leaves the image root {root}")
    real = os.path.realpath(os.path.join(real_root, normal))
    if os.path.commonpath([real_root, real]) != real_root:
        raise InputError(f"{where}: path {value!r} resolves outside the image root {root} (a symbolic link?)")
    return normal


def _hierarchy_from_column(
    classes: Sequence[str | None], column: pd.Series, sep: str, source: str, name: str
) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    seen: dict[str, tuple[int, str | None]] = {}

    def link(child: str, parent: str | None, row: int) -> None:
        if child in seen and seen[child][1] != parent:
            first_row, first = seen[child]
            raise InputError(
                f"{source}: row {row}, column {name!r}: {child!r} has parent {parent!r} here but "
                f"{first!r} in row {first_row}"
            )
        seen.setdefault(child, (row, parent))
        parents[child] = parent

    for row, (cls, value) in enumerate(zip(classes, column.tolist(), strict=True)):
        if cls is None or is_missing(value):
            continue
        chain = [part.strip() for part in str(value).split(sep) if part.strip()]
        if not chain:
            continue
        for i, node in enumerate(chain):
            link(node, chain[i - 1] if i else None, row)
        link(cls, chain[-1], row)
    for cls in classes:
        if cls is not None:
            parents.setdefault(cls, None)
    return parents


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{what} must have 1 or 3 values, got {values}")
    return (values[0], values[1], values[2])
