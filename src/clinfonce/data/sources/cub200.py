"""CUB-200-2011 (Wah et al., 2011) in its published layout.

Files (from ``CUB_200_2011.tgz``; plain text, one record per line, single spaces, 1-based ids, no header)::

    CUB_200_2011/images.txt               <image_id> <image_name>      (image_name relative to images/)
    CUB_200_2011/image_class_labels.txt   <image_id> <class_id>        (class_id 1..200)
    CUB_200_2011/train_test_split.txt     <image_id> <is_training_image>   (1 train, 0 test)
    CUB_200_2011/classes.txt              <class_id> <class_name>      ("001.Black_footed_Albatross")
    CUB_200_2011/images/<class_name>/<file>.jpg
    CUB_200_2011/attributes/image_attribute_labels.txt
                                          <image_id> <attribute_id> <is_present> <certainty_id> <time>
    attributes.txt                        <attribute_id> <attribute_name>   ("has_bill_shape::dagger")

- ``attributes.txt`` is looked for in ``CUB_200_2011/attributes.txt``, ``CUB_200_2011/attributes/`` and
  next to ``CUB_200_2011/`` (where Caltech's tarball puts it); without it, attributes are named
  ``attribute_<id>`` (noted in ``aux.notes``).
- A few lines of ``image_attribute_labels.txt`` have extra fields: only the first four are read.
- Labels: class names from ``classes.txt`` sorted, so the 1-based ``class_id`` c becomes label ``c - 1``
  for the official zero-padded names. ``image_id`` and ``class_id`` are kept as columns.
- Auxiliary information: the 312 per-image binary attributes (``is_present``), one column each, named as
  in ``attributes.txt``. ``min_certainty`` (default 1: keep every mark) turns a present mark whose certainty
  id (1 not visible, 2 guessing, 3 probably, 4 definitely) is below it into 0. An image/attribute pair the
  file does not list is missing (NaN).
- Split: the official ``train_test_split.txt`` (5,994 train / 5,794 test).
- Normalisation: the authors' statistics (mean 0.4863, 0.4999, 0.4312; std 0.2070, 0.2018, 0.2428).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import file_dataset
from clinfonce.data.options import FileOptions, OptionError
from clinfonce.data.paths import find_dataset_dir
from clinfonce.errors import InputError

MEAN = (0.4863, 0.4999, 0.4312)
STD = (0.2070, 0.2018, 0.2428)
DATASET_DIR = "CUB_200_2011"


@dataclass(kw_only=True)
class Cub200Options(FileOptions):
    """Options of CUB-200-2011."""

    root: str = field(
        metadata={"help": "the CUB_200_2011 folder (holding images.txt), or the folder that contains it"}
    )
    attributes: bool = field(
        default=True, metadata={"help": "read the 312 per-image attributes (false: labels and split only)"}
    )
    min_certainty: int = field(
        default=1,
        metadata={"help": "present marks with a lower certainty id count as absent (1..4; 1 keeps all)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.min_certainty, bool) or self.min_certainty not in (1, 2, 3, 4):
            raise OptionError("min_certainty", f"must be 1..4, got {self.min_certainty!r}")


def load(options: Cub200Options, skip_bad: bool = False) -> ImageDataset:
    """CUB-200-2011: 200 species (labels 0..199), 312 binary attributes, the official split.

    Args:
        options: the folder, the image size, what to read (see :class:`Cub200Options`).
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.

    Raises:
        InputError: a missing or malformed file (named with its line), ids that do not match across files,
            bad images.
    """
    base = find_dataset_dir(Path(options.root), DATASET_DIR, "images.txt", "CUB_200_2011.tgz")
    min_certainty = int(options.min_certainty)
    images = _read_pairs(base / "images.txt", int_value=False)
    classes = _read_pairs(base / "image_class_labels.txt")
    splits = _read_pairs(base / "train_test_split.txt")
    class_names = (
        _read_pairs(base / "classes.txt", int_value=False) if (base / "classes.txt").is_file() else {}
    )
    ids = sorted(images)
    rows = []
    for image_id in ids:
        name = images[image_id]
        class_id = _lookup(classes, image_id, base / "image_class_labels.txt")
        is_train = _lookup(splits, image_id, base / "train_test_split.txt")
        if is_train not in (0, 1):
            raise InputError(
                f"{base / 'train_test_split.txt'}: image {image_id}: is_training_image {is_train}"
            )
        if class_names:
            class_name = _lookup(class_names, class_id, base / "classes.txt")
        else:
            class_name = name.split("/", 1)[0] if "/" in name else f"{class_id:03d}"
        rows.append((f"images/{name}", class_name, "train" if is_train else "test", image_id, class_id))
    table = pd.DataFrame(rows, columns=["path", "class", "split", "image_id", "class_id"])
    aux = AuxInfo(notes="official train/test split; no auxiliary attributes read")
    if options.attributes:
        matrix, names, notes = _attributes(base, ids, min_certainty)
        table = pd.concat([table, matrix], axis=1)
        aux = AuxInfo(attributes=tuple(names), notes=notes)
    return file_dataset(
        "cub200",
        table,
        base,
        options,
        mean=MEAN,
        std=STD,
        aux=aux,
        skip_bad=skip_bad,
        all_classes=[str(name) for name in class_names.values()] or None,
    )


def _read_pairs(path: Path, int_value: bool = True) -> dict[int, int | str]:
    """``{id: value}`` from a ``<id> <value>`` file (the value is the rest of the line for names)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (part of the CUB-200-2011 layout)")
    pairs: dict[int, int | str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise InputError(f"{path}: line {number}: expected '<id> <value>', got {line.strip()!r}")
            try:
                key = int(parts[0])
                value: int | str = int(parts[1]) if int_value else parts[1].strip()
            except ValueError as error:
                raise InputError(f"{path}: line {number}: not an integer id: {line.strip()!r}") from error
            if key in pairs:
                raise InputError(f"{path}: line {number}: id {key} given twice")
            pairs[key] = value
    if not pairs:
        raise InputError(f"{path}: the file is empty")
    return pairs


def _lookup(pairs: dict[int, int | str], key: int, path: Path) -> int | str:
    if key not in pairs:
        raise InputError(f"{path}: no line for id {key}")
    return pairs[key]


def _attribute_names(base: Path) -> tuple[dict[int, str], str]:
    for path in (
        base / "attributes.txt",
        base / "attributes" / "attributes.txt",
        base.parent / "attributes.txt",
    ):
        if path.is_file():
            names = _read_pairs(path, int_value=False)
            seen: dict[str, int] = {}
            for key, name in names.items():
                if name in seen:
                    raise InputError(f"{path}: attribute name {name!r} is used by ids {seen[name]} and {key}")
                seen[str(name)] = key
            return {k: str(v) for k, v in names.items()}, f"attribute names from {path}"
    return {}, "attributes.txt not found: attributes are named attribute_<id>"


def _read_labels(path: Path) -> np.ndarray:
    """``int64 [M, 4]``: image id, attribute id, is_present, certainty id (extra fields ignored)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (pass attributes=False to load CUB without attributes)")
    try:  # fast path; lines with more than 8 fields, or any bad value, fall back to the line reader
        frame = pd.read_csv(path, sep=r"\s+", header=None, names=list(range(8)), engine="c")
        values = frame.iloc[:, :4].to_numpy(dtype=np.float64)
        if len(values) and np.isfinite(values).all() and (values == np.round(values)).all():
            return values.astype(np.int64)
    except (pd.errors.ParserError, ValueError, TypeError, UnicodeDecodeError):
        pass
    return _read_labels_slowly(path)


def _read_labels_slowly(path: Path) -> np.ndarray:
    """Line by line, to name the first bad line."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                if len(tokens) < 4:
                    raise ValueError
                records.append([int(token) for token in tokens[:4]])
            except ValueError as error:
                raise InputError(
                    f"{path}: line {number}: expected '<image_id> <attribute_id> <is_present> "
                    f"<certainty_id> ...', got {line.strip()!r}"
                ) from error
    if not records:
        raise InputError(f"{path}: the file is empty")
    return np.array(records, dtype=np.int64)


def _attributes(base: Path, ids: list[int], min_certainty: int) -> tuple[pd.DataFrame, list[str], str]:
    names, where = _attribute_names(base)
    path = base / "attributes" / "image_attribute_labels.txt"
    records = _read_labels(path)
    image_ids, attribute_ids, present, certainty = records.T
    rows = pd.Index(ids).get_indexer(image_ids)
    if (rows < 0).any():
        first = int(image_ids[np.flatnonzero(rows < 0)[0]])
        raise InputError(f"{path}: image id {first} is not in images.txt")
    attribute_list = sorted(names) if names else sorted(set(attribute_ids.tolist()))
    columns = pd.Index(attribute_list).get_indexer(attribute_ids)
    if (columns < 0).any():
        first = int(attribute_ids[np.flatnonzero(columns < 0)[0]])
        raise InputError(f"{path}: attribute id {first} is not in attributes.txt")
    if not np.isin(present, (0, 1)).all():
        first = int(present[~np.isin(present, (0, 1))][0])
        raise InputError(f"{path}: is_present must be 0 or 1, got {first}")
    value = present.astype(np.float32)
    value[certainty < min_certainty] = 0
    matrix = np.full((len(ids), len(attribute_list)), np.nan, dtype=np.float32)
    matrix[rows, columns] = value
    missing = int(np.isnan(matrix).sum())
    labels = [names.get(a, f"attribute_{a}") for a in attribute_list]
    frame = pd.DataFrame(matrix if missing else matrix.astype(np.uint8), columns=labels)
    notes = (
        f"{len(labels)} binary per-image attributes (is_present; present marks with certainty id below "
        f"{min_certainty} count as absent); {missing} image/attribute pair(s) not listed (missing); {where}"
    )
    return frame, labels, notes
