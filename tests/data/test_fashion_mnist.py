"""Fashion-MNIST from IDX .gz fixtures, plus the real files where this machine has them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from clinfonce.clusters import hierarchy_clusters
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import fashion_mnist
from clinfonce.data.sources.fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from clinfonce.data.sources.fashion_mnist import DEFAULT_DIR as FASHION_MNIST_DIR
from clinfonce.errors import InputError


def fashion_mnist_dataset(**options: object) -> ImageDataset:
    return fashion_mnist.load(fashion_mnist.FashionMnistOptions(**options))


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def write_fashion(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx_gz(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
    write_idx_gz(root / "train-labels-idx1-ubyte.gz", np.array([9, 0, 0, 3, 0]))
    images = rng.integers(0, 256, (2, 28, 28))
    images[0, 0, :] = 255  # first row of the first test image
    write_idx_gz(root / "t10k-images-idx3-ubyte.gz", images)
    write_idx_gz(root / "t10k-labels-idx1-ubyte.gz", np.array([9, 2]))


def test_fashion_mnist_idx_fixture(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    data = load_dataset("fashion_mnist", {"root": tmp_path})
    assert data.class_names == sorted(FASHION_MNIST_CLASSES)
    assert data.class_names[0] == "Ankle boot" and data.class_names[8] == "T-shirt/top"
    assert data.table["source_label"].tolist() == [9, 0, 0, 3, 0, 9, 2]
    assert data.table["label"].tolist() == [0, 8, 8, 3, 8, 0, 4]
    assert data.table["split"].tolist() == ["train"] * 5 + ["test"] * 2
    assert data.loader(5).shape == (1, 28, 28) and (data.loader(5)[0, 0] == 255).all()
    hierarchy = data.aux.hierarchy
    assert hierarchy["Sneaker"] == "footwear" and hierarchy["footwear"] == "fashion product"
    assert "hand-made" in data.aux.notes
    names = [data.class_names[i] for i in data.table["label"]]
    groups = hierarchy_clusters(names, hierarchy, level=1)
    assert groups.n_clusters == 3  # footwear (Ankle boot), tops (T-shirt, Pullover), one-piece (Dress)
    assert fashion_mnist_dataset(root=tmp_path, image_size=32).loader(0).shape == (1, 32, 32)


def test_fashion_mnist_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_dataset(root=tmp_path / "absent")
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz: truncated"):
        fashion_mnist_dataset(root=tmp_path)
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + raw[4:]))
    with pytest.raises(InputError, match="not a uint8 IDX file with 3 dimension"):
        fashion_mnist_dataset(root=tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz: cannot read"):
        fashion_mnist_dataset(root=tmp_path)


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    data = fashion_mnist_dataset()
    assert data.table["split"].value_counts().to_dict() == {"train": 60000, "val": 0, "test": 10000}
    assert data.class_names == sorted(FASHION_MNIST_CLASSES)
    # the official label order: the first training image is an ankle boot (9), the second a T-shirt (0)
    assert data.table["source_label"].tolist()[:5] == [9, 0, 0, 3, 0]
    assert data.class_names[data.table["label"].iloc[0]] == "Ankle boot"
    assert data.table["source_label"].iloc[60000] == 9
    assert np.bincount(data.table["source_label"][:60000]).tolist() == [6000] * 10
    assert abs(data.mean[0] - 0.2860) < 1e-3 and abs(data.std[0] - 0.3530) < 1e-3
    assert data.loader(0).shape == (1, 28, 28)
