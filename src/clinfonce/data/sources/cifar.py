"""CIFAR-10 and CIFAR-100, read in memory from the official "python version" pickles.

- CIFAR-10: ``cifar-10-python.tar.gz`` -> ``cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}`` (50,000 train / 10,000 test, 10 classes, no auxiliary information);
- CIFAR-100: ``cifar-100-python.tar.gz`` -> ``cifar-100-python/{train, test, meta}``; its 20 coarse
  classes are the auxiliary attribute ``coarse_label`` and a two-level hierarchy fine -> coarse.

Each batch is a Python 2 pickle of a dict with ``data`` (``uint8 [N, 3072]``: 1024 red, 1024 green, 1024
blue values, rows in row-major order), ``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels``
(CIFAR-100), and ``filenames``. The pickles are read with a restricted unpickler that only builds numpy
arrays (no other code can run).

The ``path`` of an image is ``<batch file>/<row in the file>`` (``"data_batch_3/17"``). Labels are the
class names sorted (CIFAR's name lists are already alphabetical; the official ids are kept as
``source_label``). Mean and std are computed from the training images; ``image_size`` other than 32
resizes every image once (see :mod:`clinfonce.data.in_memory`).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.in_memory import in_memory_dataset, row_paths
from clinfonce.data.options import IMAGE_SIZE_HELP, InMemoryOptions
from clinfonce.data.paths import find_dataset_dir
from clinfonce.errors import InputError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"


@dataclass(kw_only=True)
class CifarOptions(InMemoryOptions):
    """Options of CIFAR-10 and CIFAR-100."""

    root: str = field(
        metadata={"help": "the cifar-10-batches-py / cifar-100-python folder, or the folder containing it"}
    )
    image_size: int = field(default=32, metadata={"help": IMAGE_SIZE_HELP})  # as stored


def load_cifar10(options: CifarOptions) -> ImageDataset:
    """CIFAR-10 from ``cifar-10-batches-py/`` (50,000 train / 10,000 test, 10 classes, no auxiliary info).

    Args:
        options: the folder, the image size, the validation split (see :class:`CifarOptions`).
    """
    base = find_dataset_dir(Path(options.root), CIFAR10_DIR, "data_batch_1", "cifar-10-python.tar.gz")
    meta = _read_pickle(base / "batches.meta")
    names = _names(meta, "label_names", base / "batches.meta")
    parts = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    images, labels, table = _read_cifar(base, parts, {"labels": len(names)})
    raw_labels = labels["labels"]
    table.insert(2, "source_label", raw_labels)
    return in_memory_dataset(
        "cifar10",
        images,
        table,
        [names[i] for i in raw_labels],
        options,
        AuxInfo(notes="no auxiliary information: use K-means clusters (or the labels, for SupCon)"),
        all_classes=names,
    )


def load_cifar100(options: CifarOptions) -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python/``: 100 fine classes; the 20 coarse ones as auxiliary information.

    The table has ``coarse_label`` (the coarse class name, categorical) as an attribute, and
    ``aux.hierarchy`` maps each fine class to its coarse class (a two-level hierarchy: level 0 = coarse).

    Args:
        options: the folder, the image size, the validation split (see :class:`CifarOptions`).
    """
    base = find_dataset_dir(Path(options.root), CIFAR100_DIR, "train", "cifar-100-python.tar.gz")
    meta = _read_pickle(base / "meta")
    fine_names = _names(meta, "fine_label_names", base / "meta")
    coarse_names = _names(meta, "coarse_label_names", base / "meta")
    images, labels, table = _read_cifar(
        base,
        [("train", "train"), ("test", "test")],
        {"fine_labels": len(fine_names), "coarse_labels": len(coarse_names)},
    )
    fine_ids, coarse_ids = labels["fine_labels"], labels["coarse_labels"]
    parents: dict[str, str] = {}
    for f, c in zip(fine_ids.tolist(), coarse_ids.tolist(), strict=True):
        if parents.setdefault(fine_names[f], coarse_names[c]) != coarse_names[c]:
            raise InputError(
                f"{base}: fine class {fine_names[f]!r} has two coarse classes "
                f"({parents[fine_names[f]]!r}, {coarse_names[c]!r})"
            )
    table.insert(2, "source_label", fine_ids)
    table.insert(3, "coarse_label", [coarse_names[c] for c in coarse_ids])
    return in_memory_dataset(
        "cifar100",
        images,
        table,
        [fine_names[i] for i in fine_ids],
        options,
        AuxInfo(
            attributes=("coarse_label",),
            hierarchy=parents,
            notes="the 20 CIFAR-100 superclasses: attribute coarse_label; hierarchy fine -> coarse",
        ),
        all_classes=fine_names,
    )


class _NumpyUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR pickle holds: numpy arrays (and dtypes); any other global is refused."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core.") :]
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return super().find_class(module.replace("numpy._core.", "numpy.core."), name)


def _read_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (part of the CIFAR python-version layout)")
    try:
        with open(path, "rb") as handle:
            obj = _NumpyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise InputError(f"{path}: not a CIFAR python pickle: {error}") from error
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _text(value: object) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    if key not in meta or not isinstance(meta[key], (list, tuple)) or not meta[key]:
        raise InputError(f"{path}: no {key!r} list")
    names = [_text(name) for name in meta[key]]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: {key!r} has repeated names")
    return names


def _read_cifar(
    base: Path, parts: Sequence[tuple[str, str]], label_keys: dict[str, int]
) -> tuple[np.ndarray, dict[str, np.ndarray], pd.DataFrame]:
    """Read CIFAR batch files in order.

    Args:
        base: the folder of the batch files.
        parts: ``(file name, split)`` per batch file.
        label_keys: label key of the batches (e.g. ``"fine_labels"``) -> its number of classes.

    Returns:
        ``uint8 [N, 32, 32, 3]`` images, ``int64 [N]`` source labels per key, and a table with ``path``,
        ``split`` and ``filename`` columns, one row per image.
    """
    images, splits, files, paths = [], [], [], []
    labels: dict[str, list[np.ndarray]] = {key: [] for key in label_keys}
    for file_name, split in parts:
        path = base / file_name
        batch = _read_pickle(path)
        data = batch.get("data")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            shape = getattr(data, "shape", None)
            raise InputError(
                f"{path}: 'data' must be a uint8 [N, 3072] array, got {type(data).__name__} {shape}"
            )
        for key, n_classes in label_keys.items():
            labels[key].append(_cifar_labels(batch, key, n_classes, len(data), path))
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        splits += [split] * len(data)
        files += _filenames(batch, len(data))
        paths += row_paths(file_name, len(data))
    table = pd.DataFrame({"path": paths, "split": splits, "filename": files})
    return np.concatenate(images), {key: np.concatenate(v) for key, v in labels.items()}, table


def _cifar_labels(batch: dict[str, Any], key: str, n_classes: int, n: int, path: Path) -> np.ndarray:
    """``int64 [n]``: the labels under ``key`` of a batch with ``n`` images, checked to be in range."""
    if key not in batch:
        raise InputError(f"{path}: no {key!r}")
    labels = np.asarray(batch[key])
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise InputError(f"{path}: {key!r} must be {n} integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputError(f"{path}: {key!r} outside 0..{n_classes - 1}")
    return labels.astype(np.int64)


def _filenames(batch: dict[str, Any], n: int) -> list[str]:
    names = batch.get("filenames")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [_text(name) for name in names]
    return [""] * n
