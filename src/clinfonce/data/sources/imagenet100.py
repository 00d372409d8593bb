"""ImageNet-100: a class subset of ILSVRC-2012 (ImageNet-1k) given by a class-list file.

Files (a local ImageNet copy; nothing is downloaded)::

    ROOT/train/<wnid>/<wnid>_<n>.JPEG                  (as torchvision's parse_train_archive leaves it)
    ROOT/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG     (val sorted into wnid folders), or
    ROOT/val/ILSVRC2012_val_<8 digits>.JPEG            (flat) + LOC_val_solution.csv
    CLASS_LIST                                         one wnid per line (e.g. CMC's imagenet100.txt)

The Kaggle copy (``ROOT/ILSVRC/Data/CLS-LOC/{train,val}`` with ``ROOT/LOC_val_solution.csv``) is found
too. ``LOC_val_solution.csv`` has the header ``ImageId,PredictionString``; the first token of the prediction
string is the image's wnid. A flat val folder may instead come with a text file of ``<file> <wnid>`` lines
(``val_labels``). The devkit's ``ILSVRC2012_validation_ground_truth.txt`` is not supported: its ids need
``meta.mat`` to become wnids; sort val into wnid folders or use ``LOC_val_solution.csv``.

- Class list: blank lines and ``#`` comments are ignored, the first token of a line is the wnid (so
  ``LOC_synset_mapping.txt``-style lines work); "ImageNet-100" lists differ between papers (CMC's list and
  the Cl-InfoNCE authors' share 3 classes): the file decides.
- Labels: the wnids sorted (ImageFolder order), whatever the order of the list.
- Split: ``train/`` -> train, ``val/`` -> **test** (the paper's ~126k / 5k); ``val_fraction`` moves a
  seeded stratified part of train to a validation split.
- Auxiliary information: the WordNet hierarchy (``aux.hierarchy = "wordnet"``; the class names are wnids).
- Normalisation: ImageNet's statistics.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import IMAGENET_MEAN, IMAGENET_STD, file_dataset
from clinfonce.data.options import FileOptions
from clinfonce.data.paths import WNID, existing_dir, is_image_file, iter_images
from clinfonce.errors import InputError

KAGGLE_DIR = Path("ILSVRC", "Data", "CLS-LOC")
LOC_SOLUTION = "LOC_val_solution.csv"


@dataclass(kw_only=True)
class ImageNet100Options(FileOptions):
    """Options of ImageNet-100 (any class subset of ImageNet given by a list of wnids)."""

    root: str = field(
        metadata={"help": "the ImageNet folder holding train/ and val/ (or the Kaggle copy's folder)"}
    )
    class_list: str = field(
        metadata={"help": "the file of wnids, one per line (a relative path: as given, then under root)"}
    )
    val_labels: str | None = field(
        default=None,
        metadata={
            "help": "labels of a flat val/: LOC_val_solution.csv or '<file> <wnid>' lines; null: found in root"
        },
    )


def load(options: ImageNet100Options, skip_bad: bool = False) -> ImageDataset:
    """ImageNet-100 (or any class subset of ImageNet given by a list of wnids), with the WordNet hierarchy.

    Args:
        options: the folder, the class list, the image size (see :class:`ImageNet100Options`).
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.

    Raises:
        InputError: a malformed class list, a class without a train folder, an unlabelled flat val folder,
            bad images.
    """
    root = existing_dir(options.root, "ImageNet folder")
    class_list, val_labels = options.class_list, options.val_labels
    wnids = read_class_list(_class_list_path(root, class_list))
    image_root = root if (root / "train").is_dir() else root / KAGGLE_DIR
    if not (image_root / "train").is_dir():
        raise InputError(f"{root}: no train/ folder (nor {KAGGLE_DIR / 'train'})")
    if not (image_root / "val").is_dir():
        raise InputError(f"{image_root}: no val/ folder")
    rows: list[tuple[str, str, str]] = []
    for wnid in sorted(wnids):
        folder = image_root / "train" / wnid
        if not folder.is_dir():
            raise InputError(f"{folder}: no train folder for class {wnid} of the class list")
        rows += [(_relative(root, path), wnid, "train") for path in _images_under(folder)]
    val = image_root / "val"
    if any(WNID.match(p.name) and p.is_dir() for p in val.iterdir()):
        for wnid in sorted(wnids):
            if not (val / wnid).is_dir():
                raise InputError(f"{val / wnid}: no val folder for class {wnid} of the class list")
            rows += [(_relative(root, path), wnid, "test") for path in _images_under(val / wnid)]
    else:
        labels = _val_labels(root, image_root, val_labels)
        wanted = set(wnids)
        present = {Path(name).stem: name for name in os.listdir(val) if is_image_file(name)}
        for image_id, wnid in sorted(labels.items()):
            if wnid in wanted:
                name = present.get(image_id, f"{image_id}.JPEG")
                rows.append((_relative(root, val / name), wnid, "test"))
    table = pd.DataFrame(rows, columns=["path", "class", "split"])
    aux = AuxInfo(
        hierarchy="wordnet",
        notes=f"{len(wnids)} classes from {Path(class_list).name}; WordNet hierarchy over the class wnids",
    )
    return file_dataset(
        "imagenet100", table, root, options, mean=IMAGENET_MEAN, std=IMAGENET_STD, aux=aux, skip_bad=skip_bad
    )


def read_class_list(path: Path) -> list[str]:
    """The wnids of a class-list file, in file order (see the module docstring for the format)."""
    wnids: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the class list: {error}") from error
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        wnid = text.split()[0]
        if not WNID.match(wnid):
            raise InputError(f"{path}: line {number}: {wnid!r} is not a WordNet id (n + 8 digits)")
        if wnid in wnids:
            raise InputError(f"{path}: line {number}: {wnid} already listed on line {wnids[wnid]}")
        wnids[wnid] = number
    if not wnids:
        raise InputError(f"{path}: the class list is empty")
    return list(wnids)


def _class_list_path(root: Path, class_list: str | os.PathLike) -> Path:
    path = Path(class_list)
    for candidate in (path, root / path):
        if candidate.is_file():
            return candidate
    raise InputError(f"{class_list}: no such class-list file (looked as given and under {root})")


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _images_under(folder: Path) -> list[Path]:
    found = list(iter_images(folder))
    if not found:
        raise InputError(f"{folder}: no images")
    return found


def _val_labels(root: Path, image_root: Path, val_labels: str | os.PathLike | None) -> dict[str, str]:
    """``{image id (file stem): wnid}`` of a flat val folder."""
    if val_labels is None:
        candidates = [root / LOC_SOLUTION, image_root / LOC_SOLUTION]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise InputError(
                f"{image_root / 'val'}: a flat val folder needs its labels: {LOC_SOLUTION} (not found in "
                f"{root}) via val_labels=..., or val sorted into wnid folders; the devkit ground truth needs "
                "meta.mat and is not supported"
            )
    else:
        path = Path(val_labels)
        if not path.is_file():
            raise InputError(f"{path}: no such val label file")
    labels: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
                    raise InputError(f"{path}: expected the header 'ImageId,PredictionString', got {header}")
                entries = (
                    (n, r[0] if r else "", r[1] if len(r) > 1 else "") for n, r in enumerate(reader, 2)
                )
            else:
                entries = (
                    (n, *[*line.split(maxsplit=1), "", ""][:2])
                    for n, line in enumerate(handle, 1)
                    if line.strip()
                )
            for number, image, rest in entries:
                tokens = rest.split()
                if not image.strip() or not tokens or not WNID.match(tokens[0]):
                    raise InputError(f"{path}: line {number}: expected an image id and a wnid")
                labels[Path(image.strip()).stem] = tokens[0]
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a text file: {error}") from error
    if not labels:
        raise InputError(f"{path}: no val labels")
    return labels
