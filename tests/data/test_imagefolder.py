"""ImageFolder trees as datasets: labels, paths, split folders or the seeded split, bad files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import imagefolder
from clinfonce.errors import InputError


def imagefolder_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return imagefolder.load(imagefolder.ImageFolderOptions(**options), skip_bad=skip_bad)


def write_image(
    path: Path, value: int = 100, size: tuple[int, int] = (12, 10), fmt: str | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path, format=fmt)
    return path


def make_flat_folder(root: Path, per_class: dict[str, int]) -> None:
    for name, count in per_class.items():
        for i in range(count):
            write_image(root / name / f"img{i:02d}.png", value=10 * i)


def test_flat_folder_labels_paths_and_seeded_split(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, {"dog": 10, "cat": 5, "ant": 1})
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    write_image(tmp_path / "cat" / "nested" / "deep.JPG", fmt="JPEG")  # recursive, case-insensitive
    (tmp_path / ".hidden").mkdir()
    write_image(tmp_path / ".hidden" / "x.png")
    data = load_dataset("imagefolder", {"root": tmp_path, "image_size": 8})
    assert data.class_names == ["ant", "cat", "dog"]
    assert len(data) == 17
    table = data.table
    assert set(table["path"]) >= {"dog/img00.png", "cat/nested/deep.JPG", "ant/img00.png"}
    by_path = dict(zip(table["path"], table["label"], strict=True))
    assert by_path["ant/img00.png"] == 0 and by_path["cat/img01.png"] == 1 and by_path["dog/img09.png"] == 2
    counts = table.groupby(["label", "split"]).size().to_dict()
    # round(n * 0.2), at most n - 1: dog 10 -> 2 test, cat 6 -> 1, ant 1 -> 0
    assert counts == {(0, "train"): 1, (1, "train"): 5, (1, "test"): 1, (2, "train"): 8, (2, "test"): 2}
    again = imagefolder_dataset(root=tmp_path, image_size=8)
    assert again.table["split"].tolist() == table["split"].tolist()
    other = imagefolder_dataset(root=tmp_path, image_size=8, seed=1)
    assert (other.table["split"] == "test").sum() == 3
    seeds = [
        imagefolder_dataset(root=tmp_path, image_size=8, seed=s).table["split"].tolist() for s in range(2, 6)
    ]
    assert any(split != table["split"].tolist() for split in seeds)  # the seed does choose the rows
    assert data.loader(0).shape == (3, 8, 8) and data.root == tmp_path
    assert data.aux.hierarchy is None


def test_split_folders_are_used(tmp_path: Path) -> None:
    make_flat_folder(tmp_path / "train", {"a": 3, "b": 2})
    make_flat_folder(tmp_path / "val", {"a": 1, "b": 1})
    data = imagefolder_dataset(root=tmp_path, image_size=4)
    split = dict(zip(data.table["path"], data.table["split"], strict=True))
    assert split["train/a/img00.png"] == "train" and split["val/b/img00.png"] == "test"
    write_image(tmp_path / "test" / "a" / "t.png")
    data = imagefolder_dataset(root=tmp_path, image_size=4, val_fraction=0.5)
    split = dict(zip(data.table["path"], data.table["split"], strict=True))
    assert split["val/b/img00.png"] == "val" and split["test/a/t.png"] == "test"
    # val_fraction moves round(3 * 0.5) = 2 of class a's train images (at most n - 1) and 1 of b's
    train_split = data.table[data.table["path"].str.startswith("train/")]["split"]
    assert (train_split == "val").sum() == 3
    (tmp_path / "val" / "b" / "img00.png").rename(tmp_path / "val" / "flat.png")
    with pytest.raises(InputError, match="train/ holds class folders but val/ does not"):
        imagefolder_dataset(root=tmp_path)


def test_wordnet_hierarchy_needs_wnid_folders(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, {"n02084071": 2, "n01440764": 2})
    data = imagefolder_dataset(root=tmp_path, image_size=4, hierarchy="wordnet", test_fraction=0.0)
    assert data.aux.hierarchy == "wordnet" and data.class_names == ["n01440764", "n02084071"]
    assert set(data.table["split"]) == {"train"}
    make_flat_folder(tmp_path, {"dog": 1})
    with pytest.raises(InputError, match="'dog'"):
        imagefolder_dataset(root=tmp_path, image_size=4, hierarchy="wordnet")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such image folder"):
        imagefolder_dataset(root=tmp_path / "absent")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(InputError, match="empty_class: a class folder without images"):
        imagefolder_dataset(root=tmp_path)


def test_folder_bad_images_fail_or_are_skipped(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, {"a": 3})
    (tmp_path / "a" / "zz_empty.png").write_bytes(b"")
    (tmp_path / "a" / "zz_text.jpg").write_text("hello")
    with pytest.raises(InputError, match=r"zz_empty\.png: empty file"):
        imagefolder_dataset(root=tmp_path, image_size=4)
    data = imagefolder_dataset(root=tmp_path, image_size=4, skip_bad=True, test_fraction=0.0)
    assert data.skipped == {
        "a/zz_empty.png": "empty file",
        "a/zz_text.jpg": "not an image (PIL cannot identify it)",
    }
    assert len(data) == 3 and "a/zz_empty.png" not in set(data.table["path"])


def _write_bad(path: Path, kind: str) -> None:
    if kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("plain text")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "bomb":  # a valid PNG whose IHDR declares 100000 x 100000 pixels (CRC fixed)
        import struct
        import zlib

        Image.new("RGB", (8, 8)).save(path)
        data = bytearray(path.read_bytes())
        data[16:24] = struct.pack(">II", 100_000, 100_000)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "name", "reason"),
    [
        ("truncated", "bad.png", "truncated"),
        ("empty", "bad.png", "empty file"),
        ("text", "bad.jpg", "not an image"),
        pytest.param(
            "fifo",
            "bad.png",
            "not a regular file (a FIFO)",
            marks=pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no os.mkfifo"),
        ),
        ("bomb", "bad.png", "decompression bomb"),
    ],
)
def test_every_kind_of_bad_file_fails_the_loader_or_is_skipped(
    tmp_path: Path, kind: str, name: str, reason: str
) -> None:
    make_flat_folder(tmp_path, {"a": 2, "b": 2})
    _write_bad(tmp_path / "b" / name, kind)
    with pytest.raises(InputError, match=re.escape(reason)) as error:
        imagefolder_dataset(root=tmp_path, image_size=4)
    assert f"b/{name}" in str(error.value)
    data = imagefolder_dataset(root=tmp_path, image_size=4, skip_bad=True)
    assert list(data.skipped) == [f"b/{name}"] and reason in data.skipped[f"b/{name}"]
    assert len(data) == 4
