"""Finishing a file-backed dataset: screen its image files, encode labels, carve the validation split.

Every file-backed source lists its images in a table (``path`` relative to a root, ``class``, ``split`` and
auxiliary columns) and hands it to :func:`file_dataset` with its :class:`~clinfonce.data.options.FileOptions`.
Every image is opened once up front (see :func:`~clinfonce.data.files.screen_files`): the first bad file is
an error naming it, unless ``skip_bad=True`` leaves bad files out and lists them in
:attr:`ImageDataset.skipped <clinfonce.data.dataset.ImageDataset.skipped>`.

The same image file in two of the source's splits (two paths, by links, to one file: same device and inode)
is an error naming both rows (:func:`check_split_leaks`): it would leak evaluation images into training.
Copies with identical bytes are different files and are not detected. The same file twice in one split is
allowed (e.g. an image linked into two class folders); the validation split is carved afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset, ImageLoader, encode_labels
from clinfonce.data.files import (
    SKIP_HINT,
    FileImageLoader,
    ImageFileError,
    check_image_options,
    screen_files,
    size_pair,
)
from clinfonce.data.options import FileOptions, check_fraction, check_stats
from clinfonce.data.paths import WNID
from clinfonce.data.splits import DEFAULT_TEST_FRACTION, training_sample, with_validation
from clinfonce.errors import InputError

#: ImageNet statistics, the default normalisation of generic image folders and tables.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(kw_only=True)
class UserImagesOptions(FileOptions):
    """The options of a user's own images (an image folder, a metadata table): on top of the shared file
    options, the seeded test split they need when they bring none, and their normalisation."""

    test_fraction: float = field(
        default=DEFAULT_TEST_FRACTION,
        metadata={"help": "test fraction of each class when the data brings no split of its own"},
    )
    mean: list[float] = field(
        default_factory=lambda: list(IMAGENET_MEAN), metadata={"help": "normalisation mean, 1 or 3 values"}
    )
    std: list[float] = field(
        default_factory=lambda: list(IMAGENET_STD), metadata={"help": "normalisation std, 1 or 3 values"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("test_fraction", self.test_fraction)
        check_stats(self.mean, self.std)


def file_dataset(
    name: str,
    table: pd.DataFrame,
    root: Path,
    options: FileOptions,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    aux: AuxInfo | None = None,
    skip_bad: bool = False,
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
        options: the source's options: image size and conversion (see
            :class:`~clinfonce.data.files.FileImageLoader`), the file check, the validation split.
        mean, std: normalisation statistics (1 or 3 values each).
        aux: the auxiliary information.
        skip_bad: leave bad files out instead of failing (see :func:`~clinfonce.data.files.screen_files`).
        source, rows: the metadata file and the row names of ``table``, for error messages.
        all_classes: the source's full class list, if it declares one (see :func:`~clinfonce.data.dataset.encode_labels`).

    Raises:
        InputError: a bad file (unless ``skip_bad``), no readable image, the same file in two splits.
    """
    check_image_options(options.channels, options.resize)  # before the slow file screening
    size = size_pair(options.image_size)

    def screen(table: pd.DataFrame, rows: Sequence[object] | None) -> tuple[np.ndarray, dict[str, str]]:
        keep, skipped = screen_files(
            root,
            table["path"].tolist(),
            skip_bad=skip_bad,
            check=options.check_files,
            rows=rows,
            source=source,
            workers=options.workers,
            max_pixels=options.max_pixels,
        )
        kept = table.loc[keep]
        check_split_leaks(
            root,
            kept["path"].tolist(),
            kept["split"].tolist(),
            source,
            None if rows is None else [row for row, k in zip(rows, keep, strict=True) if k],
        )
        return keep, skipped

    def loader(table: pd.DataFrame) -> tuple[FileImageLoader, pd.DataFrame]:
        paths = table["path"].tolist()
        return FileImageLoader(root, paths, size, options.channels, options.resize, options.max_pixels), table

    return finish_dataset(
        name, table, options, screen=screen, loader=loader, mean=mean, std=std, aux=aux, root=root,
        source=source or str(root), rows=rows, all_classes=all_classes,
    )  # fmt: skip


def finish_dataset(
    name: str,
    table: pd.DataFrame,
    options: FileOptions,
    *,
    screen: Callable[[pd.DataFrame, Sequence[object] | None], tuple[np.ndarray, dict[str, str]]],
    loader: Callable[[pd.DataFrame], tuple[ImageLoader, pd.DataFrame]],
    mean: Sequence[float],
    std: Sequence[float],
    aux: AuxInfo | None,
    root: Path | None,
    source: str,
    rows: Sequence[object] | None = None,
    all_classes: Sequence[str] | None = None,
    skipped: dict[str, str] | None = None,
) -> ImageDataset:
    """What every dataset of image files or shards does after listing its images: keep the
    ``train_per_class`` sample (images left out are never opened), ``screen`` the rest (``(bool [N] keep,
    {name: reason})``), encode labels, carve the validation split, and build the dataset with the image
    ``loader`` of the final table (which may also drop private columns from it). ``skipped``: what the
    source left out before (merged into the dataset's ``skipped``)."""
    table = table.reset_index(drop=True)
    if options.train_per_class is not None:  # before the screening: images left out are never opened
        table, rows = _rows_kept(table, rows, training_sample(
            table["class"].to_numpy(object), table["path"], table["split"],
            options.train_per_class, options.seed,
        ))  # fmt: skip
    keep, screened = screen(table, rows)
    skipped = {**(skipped or {}), **screened}
    if not keep.all():
        table, rows = _rows_kept(table, rows, keep)
    if table.empty:
        raise InputError(f"{source}: no readable images ({len(skipped)} bad file(s) left out)")
    labels, class_names = encode_labels(table["class"], all_classes)
    table = table.drop(columns="class")
    table.insert(1, "label", labels)
    table["split"] = with_validation(
        table["split"], labels, table["path"], options.val_fraction, options.seed
    )
    image_loader, table = loader(table)
    size = size_pair(options.image_size)
    return ImageDataset(
        name=name,
        table=table,
        class_names=class_names,
        loader=image_loader,
        image_size=size,
        channels=options.channels,
        resize=options.resize,
        mean=triple(mean, "mean"),
        std=triple(std, "std"),
        aux=aux or AuxInfo(),
        root=root,
        skipped=skipped,
    )


def screen_by_loading(
    loader: Callable[[pd.DataFrame], tuple[ImageLoader, pd.DataFrame]],
    table: pd.DataFrame,
    check: bool,
    skip_bad: bool,
) -> tuple[np.ndarray, dict[str, str]]:
    """The ``check_files`` policy of sources whose images are not files (shards, Arrow data): with ``check``,
    load every image of ``table`` now (through the source's ``loader`` of a table, built only then); the
    first bad one is an :class:`InputError` naming it, or with ``skip_bad`` it is left out and listed.
    Without ``check`` every image is kept (a bad one fails when it is read).

    Returns:
        ``(bool [N] keep, {name: reason} of the dropped images)``.
    """
    keep = np.ones(len(table), dtype=bool)
    skipped: dict[str, str] = {}
    if not check:
        return keep, skipped
    load = loader(table)[0]
    for row in range(len(table)):
        try:
            load(row)
        except ImageFileError as error:
            if not skip_bad:
                raise InputError(f"{error} {SKIP_HINT}") from None
            keep[row] = False
            skipped[error.path] = error.reason
    return keep, skipped


def _rows_kept(
    table: pd.DataFrame, rows: Sequence[object] | None, keep
) -> tuple[pd.DataFrame, list[object] | None]:
    """The rows of ``table`` (and their names ``rows``) where ``bool [N]`` ``keep`` is set."""
    kept = table.loc[keep].reset_index(drop=True)
    return kept, None if rows is None else [row for row, kept_row in zip(rows, keep, strict=True) if kept_row]


def check_split_leaks(
    root: Path,
    paths: Sequence[str],
    splits: Sequence[str],
    source: str | None = None,
    rows: Sequence[object] | None = None,
) -> None:
    """:class:`InputError` naming both rows if one image file (same device and inode: a link, or one path
    listed twice) appears in two splits; files that cannot be opened are left to the file check."""
    first: dict[tuple[int, int], int] = {}
    for i, (path, split) in enumerate(zip(paths, splits, strict=True)):
        try:
            info = os.stat(root / path)
        except OSError:
            continue
        j = first.setdefault((info.st_dev, info.st_ino), i)
        if splits[j] != split:

            def name(k: int) -> str:
                return f"{'' if rows is None else f'row {rows[k]} '}{paths[k]!r} ({splits[k]})"

            raise InputError(
                f"{source or root}: {name(j)} and {name(i)} are the same image file, in two splits: it would "
                "leak evaluation images into training; keep it in one split"
            )


def check_wordnet_classes(classes: Sequence[str], source: str) -> None:
    """:class:`InputError` unless every class name is a WordNet id (``hierarchy="wordnet"``)."""
    bad = [name for name in classes if not WNID.match(name)]
    if bad:
        raise InputError(
            f"{source}: hierarchy='wordnet' needs classes named by WordNet ids (n + 8 digits); "
            f"{len(bad)} are not, e.g. {bad[0]!r}"
        )


def triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    """Three per-channel values from 1 or 3; :class:`InputError` naming ``what`` otherwise."""
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{what} must have 1 or 3 values, got {values}")
    return (values[0], values[1], values[2])
