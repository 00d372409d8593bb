"""CUB-200-2011 from a tiny fixture in the published layout (txt files, images/, attributes/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import cub200
from clinfonce.errors import InputError


def cub200_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return cub200.load(cub200.Cub200Options(**options), skip_bad=skip_bad)


CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# image_id, image_name, class_id, is_training_image
IMAGES = [
    (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 0),
    (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 1),
    (3, "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", 2, 1),
    (4, "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", 2, 0),
    (5, "003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg", 3, 1),
]
ATTRIBUTES = ["has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger", "has_bill_shape::hooked"]


def write_cub(parent: Path, names_at: str = "archive_root") -> Path:
    """``parent/CUB_200_2011`` with attributes.txt where Caltech's tarball puts it (or elsewhere)."""
    root = parent / "CUB_200_2011"
    (root / "attributes").mkdir(parents=True)
    for i, (image_id, name, _, _) in enumerate(IMAGES):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + image_id, 16), (30 * i, 100, 200)).save(path, format="JPEG")
    (root / "images.txt").write_text("".join(f"{i} {name}\n" for i, name, _, _ in IMAGES))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in IMAGES))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in IMAGES))
    (root / "classes.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(CLASSES, 1)))
    names = "".join(f"{i} {name}\n" for i, name in enumerate(ATTRIBUTES, 1))
    target = {
        "archive_root": parent / "attributes.txt",
        "dataset": root / "attributes.txt",
        "attributes_dir": root / "attributes" / "attributes.txt",
    }.get(names_at)
    if target is not None:
        target.write_text(names)
    (root / "attributes" / "certainties.txt").write_text(
        "1 not visible\n2 guessing\n3 probably\n4 definitely\n"
    )
    lines = []
    for image_id, _, _, _ in IMAGES:
        for attribute in (1, 2, 3):
            present = int((image_id + attribute) % 2 == 0)
            certainty = 1 if (image_id, attribute) == (3, 1) else 3
            lines.append(f"{image_id} {attribute} {present} {certainty} 27.7080")
    lines[4] = "2 2 1 3 0 27.7080"  # a malformed line with 6 fields (image 2, attribute 2 present)
    lines[7] = "3 2 0 4 12.5 0 3"  # a malformed line with 7 fields
    del lines[-1]  # image 5, attribute 3 not listed: missing
    (root / "attributes" / "image_attribute_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_labels_split_paths_and_attributes(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    data = load_dataset("cub200", {"root": root, "image_size": 12})
    table = data.table
    assert data.class_names == CLASSES
    assert table["label"].tolist() == [0, 0, 1, 1, 2]  # class_id 1 -> label 0
    assert table["class_id"].tolist() == [1, 1, 2, 2, 3] and table["image_id"].tolist() == [1, 2, 3, 4, 5]
    assert table["split"].tolist() == ["test", "train", "train", "test", "train"]
    assert table["path"].iloc[0] == "images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert data.aux.attributes == tuple(ATTRIBUTES)
    values = table[list(ATTRIBUTES)].to_numpy()
    expected = np.array([[(i + a) % 2 == 0 for a in (1, 2, 3)] for i in range(1, 6)], dtype=float)
    expected[1, 1] = 1  # from the 6-field line
    expected[4, 2] = np.nan
    np.testing.assert_array_equal(values, expected)
    assert "1 image/attribute pair(s) not listed" in data.aux.notes
    assert data.root == root and data.loader(0).shape == (3, 12, 12)
    assert data.mean == (0.4863, 0.4999, 0.4312)
    # each row loads its own image: the fixture paints image i with red 30 * i (JPEG: within a few levels)
    reds = [int(data.loader(row)[0, 6, 6]) for row in range(len(data))]
    assert all(abs(red - 30 * i) <= 3 for i, red in enumerate(reds)), reds


def test_parent_folder_and_other_attribute_name_locations(tmp_path: Path) -> None:
    write_cub(tmp_path / "a", names_at="dataset")
    assert cub200_dataset(root=tmp_path / "a").aux.attributes == tuple(ATTRIBUTES)  # the parent folder
    root = write_cub(tmp_path / "b", names_at="attributes_dir")
    assert cub200_dataset(root=root).aux.attributes == tuple(ATTRIBUTES)
    root = write_cub(tmp_path / "c", names_at="nowhere")
    data = cub200_dataset(root=root)
    assert data.aux.attributes == ("attribute_1", "attribute_2", "attribute_3")
    assert "attributes.txt not found" in data.aux.notes


def test_min_certainty_and_no_attributes(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    # image 3 attribute 1 is present with certainty 1 (not visible): absent with min_certainty=2
    assert cub200_dataset(root=root).table.loc[2, ATTRIBUTES[0]] == 1
    assert cub200_dataset(root=root, min_certainty=2).table.loc[2, ATTRIBUTES[0]] == 0
    data = cub200_dataset(root=root, attributes=False)
    assert data.aux.attributes == () and ATTRIBUTES[0] not in data.table


def test_malformed_files_are_named(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    labels = root / "attributes" / "image_attribute_labels.txt"
    text = labels.read_text()
    labels.write_text(text + "5 x 1 3 1.0\n")
    with pytest.raises(InputError, match=r"image_attribute_labels\.txt: line 15"):
        cub200_dataset(root=root)
    labels.write_text(text + "9 1 1 3 1.0\n")
    with pytest.raises(InputError, match=r"image id 9 is not in images\.txt"):
        cub200_dataset(root=root)
    labels.write_text(text)
    (root / "image_class_labels.txt").write_text("1 1\n")
    with pytest.raises(InputError, match=r"image_class_labels\.txt: no line for id 2"):
        cub200_dataset(root=root)
    shutil.rmtree(root)
    with pytest.raises(
        InputError, match=r"no CUB_200_2011/ folder \(with images\.txt\); extract CUB_200_2011\.tgz"
    ):
        cub200_dataset(root=tmp_path)


def test_bad_image_fails_or_is_skipped(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    (root / "images" / IMAGES[2][1]).write_text("not a jpeg")
    with pytest.raises(InputError, match=r"Laysan_Albatross_0002_1027\.jpg: not an image"):
        cub200_dataset(root=root)
    data = cub200_dataset(root=root, skip_bad=True)
    assert list(data.skipped) == [f"images/{IMAGES[2][1]}"]
    assert data.table["image_id"].tolist() == [1, 2, 4, 5]
    reds = [int(data.loader(row)[0, 6, 6]) for row in range(len(data))]  # rows still match their images
    assert all(abs(red - 30 * i) <= 3 for i, red in zip([0, 1, 3, 4], reds, strict=True)), reds


def test_class_ids_survive_a_class_without_images(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    (root / "images" / IMAGES[4][1]).write_bytes(b"")  # the only image of class 3
    data = cub200_dataset(root=root, skip_bad=True)
    assert data.class_names == CLASSES and data.table["label"].tolist() == [0, 0, 1, 1]
