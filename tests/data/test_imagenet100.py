"""ImageNet-100 from tiny fixtures in the published layouts (train/<wnid>/, val in wnid folders or flat +
LOC_val_solution.csv, the Kaggle tree) and a class-list file."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import imagenet100
from clinfonce.data.sources.imagenet100 import read_class_list
from clinfonce.errors import InputError


def imagenet100_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return imagenet100.load(imagenet100.ImageNet100Options(**options), skip_bad=skip_bad)


# the class list is not sorted (as CMC's imagenet100.txt); n01440764 is in ImageNet but not in the list
LISTED = ["n02869837", "n01749939", "n02488291"]
OTHER = "n01440764"
VAL = {  # ILSVRC2012_val_<8 digits> -> wnid
    "ILSVRC2012_val_00000001": "n01749939",
    "ILSVRC2012_val_00000002": "n02869837",
    "ILSVRC2012_val_00000003": OTHER,
    "ILSVRC2012_val_00000004": "n02488291",
    "ILSVRC2012_val_00000005": "n01749939",
}


def jpeg(path: Path, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 18), (value, 60, 30)).save(path, format="JPEG")


def write_imagenet(root: Path, val_layout: str = "folders") -> Path:
    for wnid in [*LISTED, OTHER]:
        for n in (10026, 10027):
            jpeg(root / "train" / wnid / f"{wnid}_{n}.JPEG")
    for image_id, wnid in VAL.items():
        jpeg(root / "val" / (f"{wnid}/{image_id}.JPEG" if val_layout == "folders" else f"{image_id}.JPEG"))
    if val_layout == "flat":
        lines = ["ImageId,PredictionString"]
        lines += [f"{image_id},{wnid} 156 48 272 332 {wnid} 42 9 322 285" for image_id, wnid in VAL.items()]
        (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    class_list = root / "imagenet100.txt"
    class_list.write_text("".join(f"{wnid}\n" for wnid in LISTED))
    return class_list


def test_wnid_val_folders(tmp_path: Path) -> None:
    class_list = write_imagenet(tmp_path)
    data = load_dataset("imagenet100", {"root": tmp_path, "class_list": class_list, "image_size": 8})
    assert data.class_names == sorted(LISTED)  # sorted, whatever the list's order
    assert data.aux.hierarchy == "wordnet"
    table = data.table
    assert len(table) == 6 + 4 and OTHER not in "".join(table["path"])
    by_path = dict(zip(table["path"], zip(table["label"], table["split"], strict=True), strict=True))
    assert by_path["train/n01749939/n01749939_10026.JPEG"] == (0, "train")
    assert by_path["val/n02869837/ILSVRC2012_val_00000002.JPEG"] == (2, "test")
    assert by_path["val/n01749939/ILSVRC2012_val_00000005.JPEG"] == (0, "test")
    assert data.loader(0).shape == (3, 8, 8) and data.mean == (0.485, 0.456, 0.406)


def test_flat_val_with_loc_solution(tmp_path: Path) -> None:
    class_list = write_imagenet(tmp_path, val_layout="flat")
    data = imagenet100_dataset(root=tmp_path, class_list="imagenet100.txt", image_size=8)  # under root
    test = data.table[data.table["split"] == "test"]
    assert dict(zip(test["path"], test["label"], strict=True)) == {
        "val/ILSVRC2012_val_00000001.JPEG": 0,
        "val/ILSVRC2012_val_00000002.JPEG": 2,
        "val/ILSVRC2012_val_00000004.JPEG": 1,
        "val/ILSVRC2012_val_00000005.JPEG": 0,
    }
    # a <file> <wnid> text file works too
    labels = tmp_path / "val_labels.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG n01749939\nILSVRC2012_val_00000004.JPEG n02488291\n")
    data = imagenet100_dataset(root=tmp_path, class_list=class_list, val_labels=labels, image_size=8)
    assert (data.table["split"] == "test").sum() == 2


def test_kaggle_layout(tmp_path: Path) -> None:
    class_list = write_imagenet(tmp_path / "ILSVRC" / "Data" / "CLS-LOC", val_layout="flat")
    (tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "LOC_val_solution.csv").rename(
        tmp_path / "LOC_val_solution.csv"
    )
    data = imagenet100_dataset(root=tmp_path, class_list=class_list, image_size=8, val_fraction=0.5)
    assert data.table["path"].iloc[0] == "ILSVRC/Data/CLS-LOC/train/n01749939/n01749939_10026.JPEG"
    assert data.table["split"].value_counts().to_dict() == {"train": 3, "val": 3, "test": 4}


def test_class_list_format(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# a comment\nn01440764 tench, Tinca tinca\n\nn02084071\n")
    assert read_class_list(path) == ["n01440764", "n02084071"]
    path.write_text("n01440764\ndog\n")
    with pytest.raises(InputError, match="line 2: 'dog' is not a WordNet id"):
        read_class_list(path)
    path.write_text("n01440764\nn01440764\n")
    with pytest.raises(InputError, match="line 2: n01440764 already listed on line 1"):
        read_class_list(path)


def test_errors(tmp_path: Path) -> None:
    class_list = write_imagenet(tmp_path, val_layout="flat")
    (tmp_path / "LOC_val_solution.csv").unlink()
    with pytest.raises(InputError, match="flat val folder needs its labels"):
        imagenet100_dataset(root=tmp_path, class_list=class_list)
    class_list.write_text("n09999999\n")
    with pytest.raises(InputError, match="no train folder for class n09999999"):
        imagenet100_dataset(root=tmp_path, class_list=class_list)
    with pytest.raises(InputError, match="no such class-list file"):
        imagenet100_dataset(root=tmp_path, class_list="absent.txt")


def test_bad_image_fails_or_is_skipped(tmp_path: Path) -> None:
    class_list = write_imagenet(tmp_path)
    bad = tmp_path / "train" / "n02488291" / "n02488291_10027.JPEG"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match=r"n02488291_10027\.JPEG: empty file"):
        imagenet100_dataset(root=tmp_path, class_list=class_list)
    data = imagenet100_dataset(root=tmp_path, class_list=class_list, skip_bad=True)
    assert data.skipped == {"train/n02488291/n02488291_10027.JPEG": "empty file"}
