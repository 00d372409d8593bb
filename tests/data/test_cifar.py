"""CIFAR-10/100 from fixtures in the official python-pickle format."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from clinfonce.clusters import hierarchy_clusters
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import cifar
from clinfonce.errors import InputError


def cifar10_dataset(**options: object) -> ImageDataset:
    return cifar.load_cifar10(cifar.CifarOptions(**options))


def cifar100_dataset(**options: object) -> ImageDataset:
    return cifar.load_cifar100(cifar.CifarOptions(**options))


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
    data = load_dataset("cifar10", {"root": tmp_path})  # the folder containing cifar-10-batches-py
    assert data.class_names == CIFAR10_NAMES and len(data) == 23
    assert data.table["label"].tolist()[:4] == [1, 2, 3, 4] and data.table["label"].tolist()[-3:] == [3, 9, 0]
    assert data.table["split"].value_counts().to_dict() == {"train": 20, "val": 0, "test": 3}
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
    data = load_dataset("cifar100", {"root": base})
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
