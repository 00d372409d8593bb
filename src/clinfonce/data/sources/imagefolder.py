"""Images in torchvision's ImageFolder layout: ``ROOT/<class>/**/<image>``; label = class folder name.

Layout and splits:

- if ``ROOT`` has a ``train/`` folder and a ``val/`` and/or ``test/`` folder, each holding class folders
  (sub-folders with images), those are the splits: ``train/`` -> train, ``test/`` -> test, and ``val/`` ->
  val when ``test/`` exists, else ``val/`` -> **test** (as for ImageNet, whose ``val`` set is the
  evaluation set);
- otherwise every sub-folder of ``ROOT`` is a class, and a seeded stratified ``test_fraction`` (default
  0.2) of each class is the test split (rule: :mod:`clinfonce.data.splits`);
- with ``test_root``, a second tree of class folders, ``ROOT`` is all training data and ``test_root`` the
  test split (its images' ``path`` is relative to ``ROOT`` too, e.g. ``../test/cat/1.png``).

Image files are those with an extension in torchvision's ``IMG_EXTENSIONS`` (case-insensitive), searched
recursively within a class folder (symbolic links to class folders are followed, links to sub-folders
inside them are not); hidden files and folders (names starting with ".") are ignored. Symbolic links to
image files are followed wherever they point, as torchvision's ImageFolder does: a folder of links is the
usual way to cut a subset without copying, and a link is its owner's choice (paths a *table* names are
checked instead: :func:`~clinfonce.data.paths.safe_path`). The same file in two splits (by a link, or a hard
link) is an error (:func:`~clinfonce.data.file_backed.check_split_leaks`, on resolved files). The table has
``path`` (relative to ``root``, ``/``-separated), ``label`` (class names sorted, ids ``0..C-1``) and
``split``. Normalisation: ImageNet's statistics unless ``mean`` / ``std`` say otherwise.

Auxiliary information: a class hierarchy, either ``hierarchy="wordnet"`` when the class folders are
WordNet ids (``n01440764``), or ``parents``, a map class -> parent(s) over the class names and their
ancestors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import UserImagesOptions, check_wordnet_classes, file_dataset
from clinfonce.data.options import OptionError
from clinfonce.data.paths import (
    IMAGE_EXTENSIONS,
    existing_dir,
    has_images,
    is_image_file,
    iter_images,
    visible_dirs,
)
from clinfonce.data.splits import stratified_pick
from clinfonce.errors import InputError


@dataclass(kw_only=True)
class ImageFolderOptions(UserImagesOptions):
    """Options of an ImageFolder tree."""

    root: str = field(
        metadata={"help": "the image folder: <class>/<image>, or train/ and val/ or test/ of class folders"}
    )
    test_root: str | None = field(
        default=None,
        metadata={"help": "a separate <class>/<image> folder for the test split (then root is all training)"},
    )
    hierarchy: str | None = field(
        default=None, metadata={"help": "'wordnet' when the class folders are WordNet ids (n01440764)"}
    )
    parents: dict[str, Any] | None = field(
        default=None, metadata={"help": "a class hierarchy: class -> parent (or list of parents)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_hierarchy(self.hierarchy, self.parents)


def load(options: ImageFolderOptions, skip_bad: bool = False) -> ImageDataset:
    """The images of an ImageFolder tree (layout and splits in the module docstring).

    Args:
        options: the folder and how to read it.
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.

    Raises:
        InputError: the folder is missing or has no class folder, a class folder has no image,
            ``train/`` holds class folders but ``val/`` / ``test/`` does not, a bad image (unless
            ``skip_bad``), class names that are not WordNet ids with ``hierarchy="wordnet"``.
    """
    root = existing_dir(options.root, "image folder")
    layout = _split_folders(root)
    rows: list[tuple[str, str, str]] = []
    if options.test_root is not None:
        if layout:
            raise InputError(
                f"{root}: holds its own train/ and val/ or test/ folders; give test_root only with a root "
                "of class folders"
            )
        rows = [(path, name, "train") for path, name in _class_folder_images(root, root)]
        rows += _test_images(root, existing_dir(options.test_root, "test image folder"))
    elif layout:
        for folder, split in layout.items():
            rows += [(path, name, split) for path, name in _class_folder_images(root, root / folder)]
    else:
        rows = [(path, name, "train") for path, name in _class_folder_images(root, root)]
    table = pd.DataFrame(rows, columns=["path", "class", "split"])
    if not layout and options.test_root is None and options.test_fraction:
        test = stratified_pick(table["class"], table["path"], options.test_fraction, options.seed)
        table.loc[test, "split"] = "test"
    hierarchy: str | dict[str, Any] | None = None
    if options.hierarchy == "wordnet":
        check_wordnet_classes(sorted(set(table["class"])), str(root))
        hierarchy = "wordnet"
    elif options.parents is not None:
        hierarchy = dict(options.parents)
    return file_dataset(
        "imagefolder",
        table,
        root,
        options,
        mean=options.mean,
        std=options.std,
        aux=AuxInfo(hierarchy=hierarchy),
        skip_bad=skip_bad,
    )


def _test_images(root: Path, test_root: Path) -> list[tuple[str, str, str]]:
    """The images of a separate test tree as ``(path relative to root, class, "test")`` rows."""
    return [
        (Path(os.path.relpath(test_root / path, root)).as_posix(), name, "test")
        for path, name in _class_folder_images(test_root, test_root)
    ]


def check_hierarchy(hierarchy: str | None, parents: object = None) -> None:
    """:class:`OptionError` unless ``hierarchy`` is ``None`` or ``"wordnet"`` and ``parents`` is ``None`` or
    a mapping, not both given."""
    if hierarchy is not None and hierarchy != "wordnet":
        raise OptionError(
            "hierarchy", f"must be 'wordnet' or null (a parents map goes in parents), got {hierarchy!r}"
        )
    if parents is not None and not isinstance(parents, dict):
        raise OptionError("parents", f"must be a mapping class -> parent(s), got {type(parents).__name__}")
    if hierarchy is not None and parents is not None:
        raise OptionError("parents", "and hierarchy='wordnet' exclude each other: give one of them")


def _is_class_layout(folder: Path) -> bool:
    """A folder of class folders: it has sub-folders with images and no image files of its own."""
    with os.scandir(folder) as entries:
        if any(e.is_file() and is_image_file(e.name) for e in entries):
            return False
    return any(has_images(sub) for sub in visible_dirs(folder))


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
