"""Common small benchmarks, read in memory from their published files: CIFAR-10/100, Fashion-MNIST, Omniglot.

- **CIFAR-10 / CIFAR-100**, the official "python version" pickles (``cifar-10-python.tar.gz`` ->
  ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``; ``cifar-100-python.tar.gz`` ->
  ``cifar-100-python/{train, test, meta}``). Each batch is a Python 2 pickle of a dict with ``data``
  (``uint8 [N, 3072]``: 1024 red, 1024 green, 1024 blue values, rows in row-major order), ``labels``
  (CIFAR-10) or ``fine_labels`` / ``coarse_labels`` (CIFAR-100), and ``filenames``. The pickles are read
  with a restricted unpickler that only builds numpy arrays (no other code can run). CIFAR-100's 20 coarse
  classes are the auxiliary attribute ``coarse_label`` and a two-level hierarchy fine -> coarse.
- **Fashion-MNIST**, the four IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (big-endian
  header: magic ``0x0803`` / ``0x0801``, then the dimensions; gzip-compressed, uncompressed copies are
  accepted too), as Debian's ``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``.
  Its auxiliary information is a **hand-made** product taxonomy (class -> group -> root), said in
  ``aux.notes``.
- **Omniglot**, read straight from the zips (``images_background_small1.zip``, ...; every ``images_*.zip``
  of the folder) laid out as ``<zip>/<Alphabet>/characterNN/<charid>_<drawer>.png``. Zips that share
  alphabets (Greek and Latin are in both small zips) are de-duplicated by relative path. The label is the
  character (``"Greek/character01"``); the auxiliary information is the alphabet (attribute ``alphabet``
  and hierarchy character -> alphabet) and the drawer (attribute ``drawer``, "01".."20": a real but
  semantically useless variable, the negative control). Split: there is no official split within a
  character, so drawers 1-15 are train and 16-20 test (``test_drawers``): every character is in both.
  The ``path`` column is the PNG's path inside the zips without the top folder
  (``"Greek/character01/0394_01.png"``): an identifier, since the images are decoded into memory.

Every table has a ``path`` column naming each image uniquely, relative to the dataset's folder, as the
file-backed datasets do, so that cluster files and embeddings can be joined back: for CIFAR and
Fashion-MNIST it is ``<file>/<row in the file>`` (``"data_batch_3/17"``, ``"t10k-images-idx3-ubyte/5"``).

Labels are class names sorted (CIFAR's name lists are already alphabetical; Fashion-MNIST's are not, so
its labels differ from the official 0..9 ids, which are kept as ``source_label``). Mean and std are computed
from the training images. ``image_size`` other than the native size resizes every image once, bilinear with
antialiasing.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from clinfonce.data.dataset import AuxInfo, ImageDataset, array_loader, encode_labels
from clinfonce.data.files import DEFAULT_MAX_PIXELS, ImageFileError, decode_image, size_pair, to_array
from clinfonce.data.folder import find_dataset_dir, with_validation
from clinfonce.errors import InputError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "CLINFONCE_FASHION_MNIST_DIR"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Official Fashion-MNIST class names, index = official label id.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_ROOT = "fashion product"
#: The hand-made product taxonomy: class -> group -> root.
FASHION_MNIST_HIERARCHY: dict[str, str | None] = {
    "T-shirt/top": "tops",
    "Pullover": "tops",
    "Coat": "tops",
    "Shirt": "tops",
    "Trouser": "bottoms",
    "Dress": "one-piece",
    "Sandal": "footwear",
    "Sneaker": "footwear",
    "Ankle boot": "footwear",
    "Bag": "bags",
    "tops": FASHION_MNIST_ROOT,
    "bottoms": FASHION_MNIST_ROOT,
    "one-piece": FASHION_MNIST_ROOT,
    "footwear": FASHION_MNIST_ROOT,
    "bags": FASHION_MNIST_ROOT,
    FASHION_MNIST_ROOT: None,
}
OMNIGLOT_DIR = Path("/work/shared/datasets/omniglot")
OMNIGLOT_ENV = "CLINFONCE_OMNIGLOT_DIR"
OMNIGLOT_TEST_DRAWERS = (16, 17, 18, 19, 20)
#: The largest uncompressed member read from an Omniglot zip (a guard against zip bombs).
MAX_MEMBER_BYTES = 16 * 1024 * 1024


# ----------------------------------------------------------------------------------------------- CIFAR


def cifar10_dataset(
    *,
    root: str | os.PathLike,
    image_size: int = 32,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ImageDataset:
    """CIFAR-10 from ``cifar-10-batches-py/`` (50,000 train / 10,000 test, 10 classes, no auxiliary info).

    Args:
        root: the ``cifar-10-batches-py`` folder, or the folder containing it.
        image_size: side of the images returned (32: as stored).
        val_fraction: fraction of each class's training images moved to a validation split.
        seed: seed of that split.
    """
    base = find_dataset_dir(Path(root), CIFAR10_DIR, "data_batch_1", "cifar-10-python.tar.gz")
    meta = _read_pickle(base / "batches.meta")
    names = _names(meta, "label_names", base / "batches.meta")
    parts = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    images, labels, table = _read_cifar(base, parts, {"labels": len(names)})
    raw_labels = labels["labels"]
    table.insert(2, "source_label", raw_labels)
    return _in_memory(
        "cifar10",
        images,
        table,
        [names[i] for i in raw_labels],
        image_size,
        val_fraction,
        seed,
        AuxInfo(notes="no auxiliary information: use K-means clusters (or the labels, for SupCon)"),
        all_classes=names,
    )


def cifar100_dataset(
    *,
    root: str | os.PathLike,
    image_size: int = 32,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python/``: 100 fine classes; the 20 coarse ones as auxiliary information.

    The table has ``coarse_label`` (the coarse class name, categorical) as an attribute, and
    ``aux.hierarchy`` maps each fine class to its coarse class (a two-level hierarchy: level 0 = coarse).

    Args:
        root: the ``cifar-100-python`` folder, or the folder containing it.
        image_size: side of the images returned (32: as stored).
        val_fraction: fraction of each class's training images moved to a validation split.
        seed: seed of that split.
    """
    base = find_dataset_dir(Path(root), CIFAR100_DIR, "train", "cifar-100-python.tar.gz")
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
    return _in_memory(
        "cifar100",
        images,
        table,
        [fine_names[i] for i in fine_ids],
        image_size,
        val_fraction,
        seed,
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
        paths += _row_paths(file_name, len(data))
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


def _row_paths(file_name: str, n: int) -> list[str]:
    """The ``path`` identifiers of the ``n`` images stored in ``file_name``: ``"<file_name>/<row>"``."""
    return [f"{file_name}/{row}" for row in range(n)]


def _filenames(batch: dict[str, Any], n: int) -> list[str]:
    names = batch.get("filenames")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [_text(name) for name in names]
    return [""] * n


# ----------------------------------------------------------------------------------------- Fashion-MNIST


def fashion_mnist_dataset(
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 28,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ImageDataset:
    """Fashion-MNIST from its IDX files (60,000 train / 10,000 test, 28x28 grayscale, 10 classes).

    Auxiliary information: the hand-made product taxonomy :data:`FASHION_MNIST_HIERARCHY`
    (class -> tops / bottoms / one-piece / footwear / bags -> "fashion product").

    Args:
        root: the folder of the IDX files; default ``$CLINFONCE_FASHION_MNIST_DIR``, else
            ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
        image_size: side of the images returned (28: as stored).
        val_fraction: fraction of each class's training images moved to a validation split.
        seed: seed of that split.
    """
    base = Path(root) if root is not None else Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    images, labels, splits, paths = [], [], [], []
    for split, (image_file, label_file) in FASHION_MNIST_FILES.items():
        pixels = read_idx(_idx_path(base, image_file), ndim=3)
        ids = read_idx(_idx_path(base, label_file), ndim=1)
        if len(ids) != len(pixels):
            raise InputError(f"{base}: {len(pixels)} {split} images but {len(ids)} labels")
        if len(ids) and ids.max() >= len(FASHION_MNIST_CLASSES):
            raise InputError(f"{_idx_path(base, label_file)}: labels outside 0..9")
        images.append(pixels)
        labels.append(ids.astype(np.int64))
        splits += [split] * len(ids)
        paths += _row_paths(image_file, len(ids))
    raw = np.concatenate(labels)
    table = pd.DataFrame({"path": paths, "split": splits, "source_label": raw})
    return _in_memory(
        "fashion_mnist",
        np.concatenate(images),
        table,
        [FASHION_MNIST_CLASSES[i] for i in raw],
        image_size,
        val_fraction,
        seed,
        AuxInfo(
            hierarchy=dict(FASHION_MNIST_HIERARCHY),
            notes="hierarchy: a hand-made product taxonomy (tops, bottoms, one-piece, footwear, bags), "
            "not part of Fashion-MNIST",
        ),
        all_classes=FASHION_MNIST_CLASSES,
    )


def _idx_path(base: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (base / name).is_file():
            return base / name
    raise InputError(
        f"{base}: Fashion-MNIST not found (no {stem}.gz); install it with "
        "`apt-get install dataset-fashion-mnist` or pass root=<folder with the IDX files>"
    )


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A ``uint8`` IDX array (LeCun's MNIST format), gzip-compressed or not; checked against its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(4)
            if len(header) < 4 or header[:2] != b"\0\0" or header[2] != 0x08 or header[3] != ndim:
                raise InputError(
                    f"{path}: not a uint8 IDX file with {ndim} dimension(s) (magic {header.hex() or 'missing'})"
                )
            dims_raw = handle.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise InputError(f"{path}: the IDX header is truncated")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            size = int(np.prod(dims, dtype=np.int64))
            data = handle.read(size)
            extra = handle.read(1)
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"{path}: cannot read: {error}") from error
    if len(data) != size:
        raise InputError(f"{path}: truncated: the header declares {dims} = {size} bytes, found {len(data)}")
    if extra:
        raise InputError(f"{path}: data after the {dims} array the header declares")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


# ----------------------------------------------------------------------------------------------- Omniglot


def omniglot_dataset(
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 28,
    test_drawers: Sequence[int] = OMNIGLOT_TEST_DRAWERS,
    val_fraction: float = 0.0,
    seed: int = 0,
    skip_bad: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    """Omniglot from its zips: character labels, alphabet and drawer as auxiliary information.

    Args:
        root: a folder of ``images_*.zip`` files, or one zip; default ``$CLINFONCE_OMNIGLOT_DIR``, else
            ``/work/shared/datasets/omniglot``.
        image_size: side of the grayscale images returned (they are stored at 105x105).
        test_drawers: drawer numbers (1..20) whose drawings form the test split; the rest is train.
        val_fraction: fraction of each character's training drawings moved to a validation split.
        seed: seed of that split.
        skip_bad: leave PNGs that cannot be decoded out (listed in ``skipped`` by their ``path``) instead
            of failing on the first one.
        max_pixels: decompression-bomb limit of one PNG.

    Raises:
        InputError: no zip, a member outside the layout, a bad PNG, duplicates that differ.
    """
    base = Path(root) if root is not None else Path(os.environ.get(OMNIGLOT_ENV) or OMNIGLOT_DIR)
    zips = [base] if base.is_file() else sorted(base.glob("images_*.zip")) if base.is_dir() else []
    if not zips:
        raise InputError(f"{base}: no Omniglot zips (images_*.zip); pass root=<folder with the zips>")
    test_set = {int(d) for d in test_drawers}
    size = size_pair(image_size)
    seen: dict[str, tuple[str, int]] = {}
    rows, images = [], []
    skipped: dict[str, str] = {}
    for zip_path in zips:
        try:
            archive = zipfile.ZipFile(zip_path)
        except (OSError, zipfile.BadZipFile) as error:
            raise InputError(f"{zip_path}: not a readable zip: {error}") from error
        with archive:
            for member in sorted(archive.infolist(), key=lambda m: m.filename):
                if member.is_dir() or not member.filename.lower().endswith(".png"):
                    continue
                parts = member.filename.split("/")
                where = f"{zip_path}:{member.filename}"
                if len(parts) != 4 or "_" not in parts[3]:
                    raise InputError(f"{where}: not <top>/<Alphabet>/<character>/<charid>_<drawer>.png")
                relative = "/".join(parts[1:])
                if relative in seen:
                    if seen[relative][1] != member.CRC:
                        raise InputError(f"{where}: differs from the same path in {seen[relative][0]}")
                    continue
                seen[relative] = (str(zip_path), member.CRC)
                alphabet, character, file_name = parts[1:]
                char_id, drawer_text = file_name[:-4].rsplit("_", 1)
                if not drawer_text.isdigit():
                    raise InputError(f"{where}: the drawer {drawer_text!r} is not a number")
                if member.file_size > MAX_MEMBER_BYTES:
                    raise InputError(f"{where}: {member.file_size} bytes uncompressed, too large for a PNG")
                try:
                    data = archive.read(member)
                except (OSError, zipfile.BadZipFile, zlib.error) as error:
                    raise InputError(f"{where}: cannot read: {error}") from error
                try:
                    image = decode_image(data, where, max_pixels)
                except ImageFileError as error:
                    if not skip_bad:
                        raise InputError(f"{error} (pass skip_bad=True to leave bad files out)") from error
                    skipped[relative] = error.reason
                    continue
                images.append(to_array(image, size, 1, "stretch")[0])
                drawer = int(drawer_text)
                rows.append(
                    (
                        relative,
                        "test" if drawer in test_set else "train",
                        alphabet,
                        f"{drawer:02d}",
                        char_id,
                        f"{alphabet}/{character}",
                    )
                )
    if not rows:
        raise InputError(f"{base}: the zips hold no PNG images")
    table = pd.DataFrame(rows, columns=["path", "split", "alphabet", "drawer", "char_id", "class"])
    hierarchy = dict(zip(table["class"], table["alphabet"], strict=True))
    return _in_memory(
        "omniglot",
        np.stack(images),
        table.drop(columns="class"),
        table["class"].tolist(),
        image_size,
        val_fraction,
        seed,
        AuxInfo(
            attributes=("alphabet", "drawer"),
            hierarchy=hierarchy,
            notes="alphabet: attribute and hierarchy character -> alphabet; drawer: the negative control "
            f"(semantically useless); split by drawer, test drawers {sorted(test_set)}",
        ),
        resized=True,
        skipped=skipped,
    )


# ----------------------------------------------------------------------------------------------- shared


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [N, H, W(, C)]`` resized to ``size`` (bilinear, antialiased), in chunks."""
    if images.shape[1:3] == size:
        return images
    out = np.empty((len(images), *size, *images.shape[3:]), dtype=np.uint8)
    for start in range(0, len(images), 4096):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 4096]))
        chunk = chunk.unsqueeze(-1) if chunk.ndim == 3 else chunk
        resized = torch.nn.functional.interpolate(
            chunk.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", antialias=True, align_corners=False
        )
        result = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out[start : start + len(result)] = result if images.ndim == 4 else result[..., 0]
    return out


def _channel_stats(
    images: np.ndarray, rows: np.ndarray
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of ``images[rows]`` in [0, 1] units, exact, from 256-bin histograms
    accumulated in chunks (grayscale: the one value repeated)."""
    n_channels = images.shape[3] if images.ndim == 4 else 1
    counts = np.zeros((n_channels, 256), dtype=np.int64)
    for start in range(0, len(rows), 4096):
        chunk = images[rows[start : start + 4096]].reshape(-1, n_channels)
        for c in range(n_channels):
            counts[c] += np.bincount(chunk[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for c in range(n_channels):
        total = counts[c].sum()
        mean = float((counts[c] * values).sum() / total) if total else 0.5
        var = float((counts[c] * (values - mean) ** 2).sum() / total) if total else 0.0625
        means.append(mean)
        stds.append(var**0.5)
    if n_channels == 1:
        means, stds = means * 3, stds * 3
    return (means[0], means[1], means[2]), (stds[0], stds[1], stds[2])


def _in_memory(
    name: str,
    images: np.ndarray,
    table: pd.DataFrame,
    class_names: list[str],
    image_size: int,
    val_fraction: float,
    seed: int,
    aux: AuxInfo,
    resized: bool = False,
    all_classes: Sequence[str] | None = None,
    skipped: dict[str, str] | None = None,
) -> ImageDataset:
    """Assemble an in-memory dataset: labels, validation split, resize, statistics."""
    size = size_pair(image_size)
    if not resized:
        images = _resize(images, size)
    labels, names = encode_labels(class_names, all_classes)
    table = table.reset_index(drop=True)
    table.insert(0, "label", labels)
    keys = np.char.zfill(np.arange(len(table)).astype(str), 9)  # row order
    table["split"] = with_validation(table["split"], labels, keys, val_fraction, seed)
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    mean, std = _channel_stats(images, train if len(train) else np.arange(len(images)))
    return ImageDataset(
        name=name,
        table=table,
        class_names=names,
        loader=array_loader(images),
        image_size=size,
        mean=mean,
        std=std,
        aux=aux,
        root=None,
        skipped=dict(skipped or {}),
    )
