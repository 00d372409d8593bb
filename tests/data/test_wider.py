"""WIDER Attribute from a tiny fixture in the published layout (two JSON files + Image/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import wider
from clinfonce.data.sources.wider import pool_attributes
from clinfonce.errors import InputError


def wider_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return wider.load(wider.WiderOptions(**options), skip_bad=skip_bad)


ATTRIBUTE_MAP = {"0": "Male", "1": "Long hair", "2": "Sunglasses"}
SCENE_MAP = {"0": "Parade", "1": "Handshaking", "5": "Cheering"}


def target(values: list[int]) -> dict:
    return {"attribute": values, "bbox": [1.0, 2.0, 10.0, 20.0]}


TRAINVAL = [
    {
        "file_name": "train/0--Parade/0_Parade_marchingband_1_100.jpg",
        "scene_id": 0,
        "targets": [target([1, -1, 0]), target([-1, -1, 0])],
    },
    {
        "file_name": "val/7--Cheering/7_Cheering_Cheering_7_404.jpg",
        "scene_id": 5,
        "targets": [target([0, 0, 0])],
    },
    {"file_name": "train/1--Handshaking/1_Handshaking_1.jpg", "scene_id": 1, "targets": []},
]
TEST = [
    {
        "file_name": "test/0--Parade/0_Parade_marchingband_1_1007.jpg",
        "scene_id": 0,
        "targets": [target([-1, 1, -1]), target([0, 0, 1])],
    }
]


def write_wider(root: Path, annotation_dir: str = "") -> Path:
    for i, image in enumerate(TRAINVAL + TEST):
        path = root / "Image" / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 20), (40 * i, 80, 120)).save(path, format="JPEG")
    folder = root / annotation_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, images in (("wider_attribute_trainval.json", TRAINVAL), ("wider_attribute_test.json", TEST)):
        data = {"images": images, "attribute_id_map": ATTRIBUTE_MAP, "scene_id_map": SCENE_MAP}
        (folder / name).write_text(json.dumps(data))
    return root


def test_labels_splits_and_pooled_attributes(tmp_path: Path) -> None:
    write_wider(tmp_path)
    data = load_dataset("wider", {"root": tmp_path, "image_size": 10})
    table = data.table
    assert data.class_names == ["Cheering", "Handshaking", "Parade"]  # names sorted, not scene ids
    assert table["label"].tolist() == [2, 0, 1, 2]
    assert table["scene_id"].tolist() == [0, 5, 1, 0]
    assert table["split"].tolist() == ["train", "val", "train", "test"]
    assert table["path"].iloc[0] == "Image/train/0--Parade/0_Parade_marchingband_1_100.jpg"
    assert table["n_persons"].tolist() == [2, 1, 0, 2]
    assert data.aux.attributes == ("Male", "Long hair", "Sunglasses")
    values = table[["Male", "Long hair", "Sunglasses"]].to_numpy()
    nan = np.nan
    expected = [[1, 0, nan], [nan, nan, nan], [nan, nan, nan], [0, 1, 1]]
    np.testing.assert_array_equal(values, np.array(expected))
    assert "3 image(s) with a missing attribute" in data.aux.notes
    assert data.loader(3).shape == (3, 10, 10)


def test_options(tmp_path: Path) -> None:
    write_wider(tmp_path, annotation_dir="wider_attribute_annotation")
    data = wider_dataset(root=tmp_path, val_as_train=True, unspecified="negative")
    assert data.table["split"].tolist() == ["train", "train", "train", "test"]
    assert data.table["Sunglasses"].tolist() == [0, 0, 0, 1]
    with pytest.raises(InputError, match="unspecified"):
        wider_dataset(root=tmp_path, unspecified="guess")


def test_pool_rule() -> None:
    persons = np.array([[1, -1, 0, 0], [-1, -1, 0, -1]])
    np.testing.assert_array_equal(pool_attributes(persons), [1, 0, np.nan, 0])
    np.testing.assert_array_equal(pool_attributes(persons, "negative"), [1, 0, 0, 0])
    assert np.isnan(pool_attributes(np.zeros((0, 2)))).all()


def test_malformed_json_is_named(tmp_path: Path) -> None:
    write_wider(tmp_path)
    path = tmp_path / "wider_attribute_test.json"
    bad = {
        "images": [dict(TEST[0], targets=[target([1, 1])])],
        "attribute_id_map": ATTRIBUTE_MAP,
        "scene_id_map": SCENE_MAP,
    }
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"wider_attribute_test\.json: images\[0\] .* list of 3 values"):
        wider_dataset(root=tmp_path)
    bad["images"] = [dict(TEST[0], scene_id=9)]
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="scene_id 9 is not in scene_id_map"):
        wider_dataset(root=tmp_path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the JSON"):
        wider_dataset(root=tmp_path)
    path.unlink()
    with pytest.raises(InputError, match=r"no wider_attribute_test\.json"):
        wider_dataset(root=tmp_path)


@pytest.mark.parametrize(
    ("file_name", "message"),
    [("../escape.jpg", "leaves the image root"), ("/etc/x.jpg", "is absolute"), ("link/a.jpg", "outside")],
)
def test_file_names_must_stay_inside_image(tmp_path: Path, file_name: str, message: str) -> None:
    write_wider(tmp_path)
    (tmp_path / "Image" / "link").symlink_to(tmp_path)  # a link out of Image/
    path = tmp_path / "wider_attribute_test.json"
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = file_name
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"wider_attribute_test\.json: images\[0\].*{message}"):
        wider_dataset(root=tmp_path)


def test_bad_image_fails_or_is_skipped(tmp_path: Path) -> None:
    write_wider(tmp_path)
    broken = tmp_path / "Image" / TEST[0]["file_name"]
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(InputError, match=r"0_Parade_marchingband_1_1007\.jpg: truncated"):
        wider_dataset(root=tmp_path)
    data = wider_dataset(root=tmp_path, skip_bad=True)
    assert list(data.skipped) == ["Image/" + TEST[0]["file_name"]]
    assert "test" not in set(data.table["split"])
