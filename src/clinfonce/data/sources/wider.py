"""WIDER Attribute (Li, Huang, Loy, Tang, ECCV 2016) in its published layout.

Files (``wider_attribute_annotation.zip`` and ``wider_attribute_image.tgz`` unpacked; nothing is
downloaded)::

    ROOT/wider_attribute_trainval.json   (also looked for in ROOT/wider_attribute_annotation/)
    ROOT/wider_attribute_test.json
    ROOT/Image/{train,val,test}/<event_id>--<Event_Name>/<file>.jpg

Each JSON file is ``{"images": [image], "attribute_id_map": {"0": name, ...},
"scene_id_map": {"0": name, ...}}`` with ``image = {"file_name": "train/0--Parade/....jpg",
"scene_id": int, "targets": [{"attribute": [14 ints], "bbox": [x, y, w, h]}, ...]}``; ``file_name`` is
relative to ``Image/``; an attribute value is 1 (positive), -1 (negative) or 0 (unspecified), per person.

- Label: the 30 scenes, named by ``scene_id_map`` and sorted by name (so the label is *not* the scene id;
  ``scene_id`` is kept as a column).
- Auxiliary information: the 14 attributes (named by ``attribute_id_map``), pooled per image by this rule:
  1 if **any** person has the attribute 1; else 0 if some person has it -1 (every annotated person is
  negative); else missing (NaN: no person, or all unspecified). With ``unspecified="negative"`` the last
  case is 0 instead (the "any person positive" rule of some public loaders). ``n_persons`` is a column.
- Split: by the ``file_name`` prefix of the trainval file, ``val/`` -> val and everything else -> train;
  the test file -> test. The paper trains on train+val (6,871) and tests on test (6,918):
  ``val_as_train=True`` gives that.
- Normalisation: the authors' statistics (mean 0.4772, 0.4405, 0.4100; std 0.2960, 0.2876, 0.2935).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import file_dataset
from clinfonce.data.options import FileOptions, check_choice
from clinfonce.data.paths import existing_dir, safe_path
from clinfonce.errors import InputError

MEAN = (0.4772, 0.4405, 0.4100)
STD = (0.2960, 0.2876, 0.2935)
TRAINVAL_JSON = "wider_attribute_trainval.json"
TEST_JSON = "wider_attribute_test.json"
ANNOTATION_DIRS = (".", "wider_attribute_annotation")
UNSPECIFIED_RULES = ("missing", "negative")


@dataclass(kw_only=True)
class WiderOptions(FileOptions):
    """Options of WIDER Attribute."""

    root: str = field(metadata={"help": "the folder holding the two JSON files and Image/"})
    unspecified: str = field(
        default="missing",
        metadata={
            "help": "an attribute no person is positive or negative for: missing (NaN) or negative (0)"
        },
    )
    val_as_train: bool = field(
        default=False, metadata={"help": "put the val/ images in the training split (as the paper does)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("unspecified", self.unspecified, UNSPECIFIED_RULES)


def load(options: WiderOptions, skip_bad: bool = False) -> ImageDataset:
    """WIDER Attribute: 30 scene labels, 14 person attributes pooled per image.

    Args:
        options: the folder, the image size, the pooling rule and split (see :class:`WiderOptions`).
        skip_bad: leave unreadable images out (listed in ``skipped``) instead of failing on the first one.

    Raises:
        InputError: a missing or malformed JSON file (naming the file, image and key), bad images.
    """
    root = existing_dir(options.root, "WIDER Attribute folder")
    unspecified, val_as_train = options.unspecified, options.val_as_train
    frames, attribute_names = [], None
    for name, is_test in ((TRAINVAL_JSON, False), (TEST_JSON, True)):
        path = _find_json(root, name)
        frame, names = _read_json(path, root / "Image", is_test, val_as_train, unspecified)
        if attribute_names is not None and names != attribute_names:
            raise InputError(f"{path}: attribute_id_map differs from the one of {TRAINVAL_JSON}")
        attribute_names = names
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    assert attribute_names is not None
    rule = (
        "1 if any person is 1, else 0 if a person is -1, else missing (NaN)"
        if unspecified == "missing"
        else "1 if any person is 1, else 0"
    )
    aux = AuxInfo(
        attributes=tuple(attribute_names),
        notes=f"{len(attribute_names)} person attributes pooled per image: {rule}; "
        f"{int(table[list(attribute_names)].isna().any(axis=1).sum())} image(s) with a missing attribute",
    )
    return file_dataset("wider", table, root, options, mean=MEAN, std=STD, aux=aux, skip_bad=skip_bad)


def pool_attributes(targets: np.ndarray, unspecified: str = "missing") -> np.ndarray:
    """Pool per-person attributes ``[P, A]`` (1 / -1 / 0) to one image ``float32 [A]`` (module rule)."""
    pooled = np.full(targets.shape[1], np.nan if unspecified == "missing" else 0.0, dtype=np.float32)
    if len(targets):
        pooled[(targets == -1).any(axis=0)] = 0.0
        pooled[(targets == 1).any(axis=0)] = 1.0
    return pooled


def _find_json(root: Path, name: str) -> Path:
    for folder in ANNOTATION_DIRS:
        if (root / folder / name).is_file():
            return root / folder / name
    raise InputError(
        f"{root}: no {name} (looked in {', '.join(str(root / d) for d in ANNOTATION_DIRS)}); "
        "unpack wider_attribute_annotation.zip there"
    )


def _id_map(data: dict[str, Any], key: str, path: Path) -> dict[int, str]:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise InputError(f"{path}: missing or empty {key!r}")
    try:
        return {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: {key!r} keys must be integer ids: {error}") from error


def _read_json(
    path: Path, image_dir: Path, is_test: bool, val_as_train: bool, unspecified: str
) -> tuple[pd.DataFrame, list[str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}: expected an object with an 'images' list")
    attribute_map = _id_map(data, "attribute_id_map", path)
    scene_map = _id_map(data, "scene_id_map", path)
    attribute_ids = sorted(attribute_map)
    names = [attribute_map[i] for i in attribute_ids]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: attribute_id_map has repeated names")
    reserved = {"path", "class", "split", "label", "scene_id", "n_persons"} & set(names)
    if reserved:
        raise InputError(f"{path}: attribute names {sorted(reserved)} clash with the dataset's own columns")
    rows, pooled = [], []
    real_image_dir = os.path.realpath(image_dir)
    for index, image in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        if not isinstance(image, dict):
            raise InputError(f"{where}: not an object")
        file_name, scene, targets = image.get("file_name"), image.get("scene_id"), image.get("targets", [])
        if not isinstance(file_name, str) or not file_name:
            raise InputError(f"{where}: missing 'file_name'")
        where = f"{where} ({file_name})"
        relative = safe_path(image_dir, real_image_dir, file_name, where)
        if isinstance(scene, bool) or not isinstance(scene, int) or scene not in scene_map:
            raise InputError(f"{where}: scene_id {scene!r} is not in scene_id_map")
        if not isinstance(targets, list):
            raise InputError(f"{where}: 'targets' is not a list")
        persons = np.zeros((len(targets), len(names)), dtype=np.int8)
        for j, target in enumerate(targets):
            values = target.get("attribute") if isinstance(target, dict) else None
            if not isinstance(values, list) or len(values) != len(names):
                raise InputError(f"{where}: targets[{j}]: 'attribute' must be a list of {len(names)} values")
            if any(isinstance(v, bool) or v not in (-1, 0, 1) for v in values):
                raise InputError(f"{where}: targets[{j}]: attribute values must be 1, -1 or 0, got {values}")
            persons[j] = values
        pooled.append(pool_attributes(persons, unspecified))
        split = (
            "test" if is_test else ("val" if file_name.startswith("val/") and not val_as_train else "train")
        )
        rows.append((f"Image/{relative}", scene_map[scene], split, scene, len(targets)))
    if not rows:
        raise InputError(f"{path}: no images")
    table = pd.DataFrame(rows, columns=["path", "class", "split", "scene_id", "n_persons"])
    table = pd.concat([table, pd.DataFrame(np.array(pooled), columns=names)], axis=1)
    return table, names
