"""CIFAR-10/100 (python pickles), Fashion-MNIST (IDX .gz) and Omniglot (zips): fixtures in the published
formats, plus the real Fashion-MNIST and Omniglot files where this machine has them."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from clinfonce.clusters import hierarchy_clusters
from clinfonce.data.common import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    OMNIGLOT_DIR,
    cifar10_dataset,
    cifar100_dataset,
    fashion_mnist_dataset,
    omniglot_dataset,
)
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError

# ------------------------------------------------------------------------------------------------ CIFAR


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle did: ``str`` as byte strings, numpy globals as ``numpy.core``."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2str
    dispatch[bytes] = _save_py2str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
            self.write(pickle.GLOBAL + module.encode() + b"\n" + (name or obj.__name__).encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dump_py2(path: Path, obj: object) -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_images(n: int, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # image 0: R 10, G 20, B 30
    data[0, :32] = 200  # the first row of image 0's red channel
    return data


def write_cifar10(root: Path) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for i in range(1, 6):
        labels = [(i + j) % 10 for j in range(4)]
        batch = {
            "batch_label": f"training batch {i} of 5",
            "labels": labels,
            "data": cifar_images(4, i),
            "filenames": [f"img_{i}_{j}.png" for j in range(4)],
        }
        dump_py2(base / f"data_batch_{i}", batch)
    test = {"batch_label": "testing batch 1 of 1", "labels": [3, 9, 0], "data": cifar_images(3, 9)}
    test["filenames"] = ["t0.png", "t1.png", "t2.png"]
    dump_py2(base / "test_batch", test)
    dump_py2(
        base / "batches.meta", {"num_cases_per_batch": 10000, "label_names": CIFAR10_NAMES, "num_vis": 3072}
    )
    return base


def test_cifar10_pickles(tmp_path: Path) -> None:
    base = write_cifar10(tmp_path)
    # the fixture loads like the real files: bytes keys with encoding="bytes", no default-encoding load
    with open(base / "data_batch_1", "rb") as handle:
        assert b"data" in pickle.load(handle, encoding="bytes")
    with open(base / "data_batch_1", "rb") as handle, pytest.raises(UnicodeDecodeError):
        pickle.load(handle)
    data = load_dataset("cifar10", root=tmp_path)  # the folder containing cifar-10-batches-py
    assert data.class_names == CIFAR10_NAMES and len(data) == 23
    assert data.table["label"].tolist()[:4] == [1, 2, 3, 4] and data.table["label"].tolist()[-3:] == [3, 9, 0]
    assert data.table["split"].value_counts().to_dict() == {"train": 20, "test": 3}
    assert data.table["filename"].iloc[0] == "img_1_0.png" and data.table["path"].iloc[-1] == "test_batch/2"
    assert data.table["path"].iloc[5] == "data_batch_2/1"  # 4 images per training batch in the fixture
    image = data.loader(0)
    assert image.shape == (3, 32, 32)
    assert image[:, 5, 5].tolist() == [10, 20, 30] and (image[0, 0, :] == 200).all()
    assert data.aux.attributes == () and data.root is None
    assert 0.3 < data.mean[0] < 0.7 and len(data.std) == 3
    # the statistics are those of the training images only (the five data batches), per RGB channel
    train = np.concatenate([cifar_images(4, i) for i in range(1, 6)]).reshape(-1, 3, 1024) / 255
    np.testing.assert_allclose(data.mean, train.mean(axis=(0, 2)), atol=1e-4)
    np.testing.assert_allclose(data.std, train.std(axis=(0, 2)), atol=1e-4)
    assert cifar10_dataset(root=base, image_size=16).loader(0).shape == (3, 16, 16)


def test_cifar_refuses_foreign_pickles(tmp_path: Path) -> None:
    base = write_cifar10(tmp_path)
    (base / "data_batch_3").write_bytes(pickle.dumps({"data": os.getcwd}, protocol=2))
    with pytest.raises(InputError, match=r"data_batch_3: not a CIFAR python pickle: refusing to load"):
        cifar10_dataset(root=base)
    (base / "data_batch_3").unlink()
    with pytest.raises(InputError, match="data_batch_3: no such file"):
        cifar10_dataset(root=base)
    with pytest.raises(InputError, match=r"extract cifar-10-python\.tar\.gz"):
        cifar10_dataset(root=tmp_path / "absent")


def write_cifar100(root: Path) -> Path:
    """``root/cifar-100-python`` with 4 fine classes under 3 coarse ones; 6 training and 2 test images."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    fine_names = ["apple", "aquarium_fish", "bear", "pear"]
    coarse_names = ["fish", "fruit_and_vegetables", "large_carnivores"]
    coarse_of = [1, 0, 2, 1]
    for name, fine in (("train", [0, 1, 2, 3, 3, 2]), ("test", [1, 0])):
        batch = {
            "batch_label": name,
            "fine_labels": fine,
            "coarse_labels": [coarse_of[f] for f in fine],
            "data": cifar_images(len(fine), len(fine)),
            "filenames": [f"{name}{i}.png" for i in range(len(fine))],
        }
        dump_py2(base / name, batch)
    dump_py2(base / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return base


def test_cifar100_coarse_labels_and_hierarchy(tmp_path: Path) -> None:
    base = write_cifar100(tmp_path)
    fine_names = ["apple", "aquarium_fish", "bear", "pear"]
    data = load_dataset("cifar100", root=base)
    assert data.class_names == fine_names
    assert data.table["label"].tolist() == [0, 1, 2, 3, 3, 2, 1, 0]
    assert data.table["coarse_label"].tolist()[:3] == ["fruit_and_vegetables", "fish", "large_carnivores"]
    assert data.aux.attributes == ("coarse_label",)
    assert data.aux.hierarchy == {
        "apple": "fruit_and_vegetables",
        "aquarium_fish": "fish",
        "bear": "large_carnivores",
        "pear": "fruit_and_vegetables",
    }
    names = [data.class_names[i] for i in data.table["label"]]
    assert hierarchy_clusters(names, data.aux.hierarchy, level=0).n_clusters == 3
    batch = pickle.loads((base / "train").read_bytes(), encoding="bytes")
    batch[b"coarse_labels"][0] = 0  # apple now also under fish
    dump_py2(base / "train", {k.decode(): v for k, v in batch.items()})
    with pytest.raises(InputError, match="fine class 'apple' has two coarse classes"):
        cifar100_dataset(root=base)


# ---------------------------------------------------------------------------------------- Fashion-MNIST


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
    data = load_dataset("fashion_mnist", root=tmp_path)
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
    assert data.table["split"].value_counts().to_dict() == {"train": 60000, "test": 10000}
    assert data.class_names == sorted(FASHION_MNIST_CLASSES)
    # the official label order: the first training image is an ankle boot (9), the second a T-shirt (0)
    assert data.table["source_label"].tolist()[:5] == [9, 0, 0, 3, 0]
    assert data.class_names[data.table["label"].iloc[0]] == "Ankle boot"
    assert data.table["source_label"].iloc[60000] == 9
    assert np.bincount(data.table["source_label"][:60000]).tolist() == [6000] * 10
    assert abs(data.mean[0] - 0.2860) < 1e-3 and abs(data.std[0] - 0.3530) < 1e-3
    assert data.loader(0).shape == (1, 28, 28)


# ------------------------------------------------------------------------------------------------ Omniglot


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    array = np.full((105, 105), 255, dtype=np.uint8)
    array[value % 100 : value % 100 + 5, :] = 0
    Image.fromarray(array).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_omniglot_zip(path: Path, characters: dict[str, str], change: str | None = None) -> None:
    """``characters``: "<Alphabet>/characterNN" -> char id; 20 drawers each."""
    top = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/", "")
        for index, (character, char_id) in enumerate(sorted(characters.items())):
            for drawer in range(1, 21):
                name = f"{top}/{character}/{char_id}_{drawer:02d}.png"
                archive.writestr(
                    name, png_bytes(index * 20 + drawer + (50 if name.endswith(change or "?") else 0))
                )


def test_omniglot_zips(tmp_path: Path) -> None:
    write_omniglot_zip(
        tmp_path / "images_background_small1.zip", {"Aleph/character01": "0001", "Greek/character01": "0394"}
    )
    write_omniglot_zip(
        tmp_path / "images_background_small2.zip", {"Greek/character01": "0394", "Beta/character02": "0777"}
    )
    data = load_dataset("omniglot", root=tmp_path, image_size=32)
    # Greek appears in both zips: de-duplicated, and Beta sorts before Greek in the second zip
    assert len(data) == 60
    assert data.class_names == ["Aleph/character01", "Beta/character02", "Greek/character01"]
    table = data.table
    assert table["path"].iloc[0] == "Aleph/character01/0001_01.png"
    assert table.groupby(["label", "split"]).size().to_dict() == {
        (c, s): n for c in range(3) for s, n in (("test", 5), ("train", 15))
    }
    assert set(table[table["split"] == "test"]["drawer"]) == {"16", "17", "18", "19", "20"}
    assert data.aux.attributes == ("alphabet", "drawer")
    assert data.aux.hierarchy == {
        "Aleph/character01": "Aleph",
        "Beta/character02": "Beta",
        "Greek/character01": "Greek",
    }
    assert "negative control" in data.aux.notes
    image = data.loader(0)
    assert image.shape == (1, 32, 32) and image.max() == 255 and image.min() < 128
    other = omniglot_dataset(root=tmp_path, test_drawers=[1], val_fraction=0.1)
    assert other.table["split"].value_counts().to_dict() == {"train": 51, "val": 6, "test": 3}


def test_omniglot_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Omniglot zips"):
        omniglot_dataset(root=tmp_path)
    write_omniglot_zip(tmp_path / "images_a.zip", {"Greek/character01": "0394"})
    write_omniglot_zip(tmp_path / "images_b.zip", {"Greek/character01": "0394"}, change="_03.png")
    with pytest.raises(InputError, match=r"images_b\.zip:images_b/Greek/character01/0394_03\.png: differs"):
        omniglot_dataset(root=tmp_path)
    (tmp_path / "images_b.zip").unlink()
    with zipfile.ZipFile(tmp_path / "images_c.zip", "w") as archive:
        archive.writestr("images_c/Greek/character02/0395_01.png", b"not a png")
    with pytest.raises(InputError, match=r"0395_01\.png: not an image"):
        omniglot_dataset(root=tmp_path)
    data = omniglot_dataset(root=tmp_path, skip_bad=True)
    assert data.skipped == {"Greek/character02/0395_01.png": "not an image (PIL cannot identify it)"}
    assert len(data) == 20 and data.class_names == ["Greek/character01"]


@pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background_small1.zip").is_file(),
    reason="the Omniglot zips are not in /work/shared/datasets/omniglot",
)
def test_real_omniglot() -> None:
    data = omniglot_dataset()
    table = data.table
    assert len(data) == 4840 and data.n_classes == 242
    assert table["alphabet"].nunique() == 8 and len(data.aux.hierarchy) == 242
    assert (table.groupby("label")["split"].nunique() == 2).all()  # every character in both splits
    assert table["split"].value_counts().to_dict() == {"train": 242 * 15, "test": 242 * 5}
    assert not table["path"].duplicated().any()
    assert data.loader(0).shape == (1, 28, 28)
