"""Fashion-MNIST, read in memory from its four IDX files.

Files: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (big-endian header: magic ``0x0803`` /
``0x0801``, then the dimensions; gzip-compressed, uncompressed copies are accepted too), as Debian's
``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``.

- 60,000 train / 10,000 test images, 28x28 grayscale, 10 classes.
- Labels: class names sorted; they differ from the official 0..9 ids, which are kept as ``source_label``.
- Auxiliary information: a **hand-made** product taxonomy (class -> group -> root, :data:`HIERARCHY`),
  said in ``aux.notes``.
- The ``path`` of an image is ``<IDX file>/<row in the file>`` (``"t10k-images-idx3-ubyte/5"``).
- Mean and std are computed from the training images; ``image_size`` other than 28 resizes every image
  once (see :mod:`clinfonce.data.in_memory`).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.in_memory import in_memory_dataset, row_paths
from clinfonce.data.options import IMAGE_SIZE_HELP, InMemoryOptions
from clinfonce.errors import InputError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "CLINFONCE_FASHION_MNIST_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Official Fashion-MNIST class names, index = official label id.
CLASSES = (
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
TAXONOMY_ROOT = "fashion product"
#: The hand-made product taxonomy: class -> group -> root.
HIERARCHY: dict[str, str | None] = {
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
    "tops": TAXONOMY_ROOT,
    "bottoms": TAXONOMY_ROOT,
    "one-piece": TAXONOMY_ROOT,
    "footwear": TAXONOMY_ROOT,
    "bags": TAXONOMY_ROOT,
    TAXONOMY_ROOT: None,
}


@dataclass(kw_only=True)
class FashionMnistOptions(InMemoryOptions):
    """Options of Fashion-MNIST."""

    root: str | None = field(
        default=None, metadata={"help": f"the folder of the IDX files; null: ${DIR_ENV}, else {DEFAULT_DIR}"}
    )
    image_size: int = field(default=28, metadata={"help": IMAGE_SIZE_HELP})  # as stored


def load(options: FashionMnistOptions) -> ImageDataset:
    """Fashion-MNIST from its IDX files (60,000 train / 10,000 test, 28x28 grayscale, 10 classes).

    Auxiliary information: the hand-made product taxonomy :data:`HIERARCHY`
    (class -> tops / bottoms / one-piece / footwear / bags -> "fashion product").

    Args:
        options: the folder, the image size, the validation split (see :class:`FashionMnistOptions`).
    """
    root = options.root
    base = Path(root) if root is not None else Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    images, labels, splits, paths = [], [], [], []
    for split, (image_file, label_file) in FILES.items():
        pixels = read_idx(idx_path(base, image_file), ndim=3)
        ids = read_idx(idx_path(base, label_file), ndim=1)
        if len(ids) != len(pixels):
            raise InputError(f"{base}: {len(pixels)} {split} images but {len(ids)} labels")
        if len(ids) and ids.max() >= len(CLASSES):
            raise InputError(f"{idx_path(base, label_file)}: labels outside 0..9")
        images.append(pixels)
        labels.append(ids.astype(np.int64))
        splits += [split] * len(ids)
        paths += row_paths(image_file, len(ids))
    raw = np.concatenate(labels)
    table = pd.DataFrame({"path": paths, "split": splits, "source_label": raw})
    return in_memory_dataset(
        "fashion_mnist",
        np.concatenate(images),
        table,
        [CLASSES[i] for i in raw],
        options,
        AuxInfo(
            hierarchy=dict(HIERARCHY),
            notes="hierarchy: a hand-made product taxonomy (tops, bottoms, one-piece, footwear, bags), "
            "not part of Fashion-MNIST",
        ),
        all_classes=CLASSES,
    )


def idx_path(base: Path, stem: str) -> Path:
    """``base/<stem>.gz``, else ``base/<stem>``; :class:`InputError` saying how to install the files."""
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
