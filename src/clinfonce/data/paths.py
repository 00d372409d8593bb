"""Path safety and folder walking shared by the file-backed sources.

- :func:`safe_path`: a path from a metadata file, normalised, that must stay inside the image root
  (not absolute, no ``..`` out of it, no symbolic link pointing outside);
- :func:`existing_dir`, :func:`find_dataset_dir`: the folder a user named, or an error saying what to give
  (nothing is ever downloaded);
- :func:`visible_dirs`, :func:`iter_images`: sorted walks that skip hidden entries (names starting with
  ".") and keep only image files (:data:`IMAGE_EXTENSIONS`, case-insensitive).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from torchvision.datasets.folder import IMG_EXTENSIONS

from clinfonce.errors import InputError

#: Image file extensions (torchvision's ``IMG_EXTENSIONS``), compared case-insensitively.
IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
#: A WordNet noun id as ImageNet names its class folders: ``n`` + 8 digits.
WNID = re.compile(r"^n\d{8}$")


def is_image_file(name: str) -> bool:
    """Whether a file name has an image extension (and is not hidden, i.e. does not start with ".")."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


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


def has_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image file anywhere below it (see :func:`iter_images`)."""
    return next(iter_images(folder), None) is not None


def safe_path(root: Path, real_root: str, value: object, where: str) -> str:
    """The normalised relative path of a table cell; :class:`InputError` if it is empty or leaves root.

    Args:
        root: the image root, as the user named it (for messages).
        real_root: ``os.path.realpath(root)``, computed once by the caller.
        value: the cell.
        where: what the cell is, for messages (``"meta.csv: row 3"``).
    """
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
