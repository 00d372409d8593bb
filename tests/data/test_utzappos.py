"""UT-Zappos50K from a tiny fixture in the published layout (image tree + ut-zap50k-data CSVs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import utzappos
from clinfonce.data.sources.utzappos import cid_of
from clinfonce.errors import InputError


def utzappos_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return utzappos.load(utzappos.UtzapposOptions(**options), skip_bad=skip_bad)


IMAGES = [
    "Shoes/Sneakers and Athletic Shoes/Dolce & Gabbana/8014403.585.jpg",
    "Boots/Ankle/Keen/7892181.326309.jpg",
    "Sandals/Flat/Giuseppe Zanotti/8080742.392822.jpg",
    "Slippers/Slipper Flats/Favorite Characters/8018173.767.jpg",
    "Shoes/Heels/T.U.K%2E/7346085.144.jpg",
    *[f"Shoes/Oxfords/Bostonian/10062{i}.72.jpg" for i in range(10)],
]
BIN_COLUMNS = [
    "CID",
    "Category.Shoes",
    "Category.Boots",
    "SubCategory.Oxfords",
    "SubCategory.Ankle",
    "HeelHeight.Flat",
    "Gender.Men",
    "Material.Faux.Leather",
    "ToeStyle.Round Toe",
]


def write_tree(root: Path) -> None:
    base = root / "ut-zap50k-images-square"
    for i, relative in enumerate(IMAGES):
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (136, 136), (255, 255 - i, 250)).save(path, format="JPEG")
    (root / "ut-zap50k-data").mkdir()


def write_bin_csv(root: Path) -> None:
    rows = []
    for i, relative in enumerate(IMAGES):
        cid = cid_of(relative.rsplit("/", 1)[1])
        if cid == "7346085-144":
            continue  # this image has no meta-data row
        shoes = int(relative.startswith("Shoes"))
        rows.append(
            [
                cid,
                shoes,
                int(relative.startswith("Boots")),
                int("Oxfords" in relative),
                0,
                i % 2,
                1,
                0,
                i % 3 == 0,
            ]
        )
    rows.append(["999-1", 0, 1, 0, 1, 1, 0, 1, 1])  # a row without an image
    rows.append([rows[0][0], 1, 0, 0, 0, 0, 0, 1, 1])  # a repeated CID: ignored
    frame = pd.DataFrame(rows, columns=BIN_COLUMNS)
    frame["ToeStyle.Round Toe"] = frame["ToeStyle.Round Toe"].astype(int)
    frame.to_csv(root / "ut-zap50k-data" / "meta-data-bin.csv", index=False)


def test_labels_split_attributes_and_paths(tmp_path: Path) -> None:
    write_tree(tmp_path)
    write_bin_csv(tmp_path)
    data = load_dataset("utzappos", {"root": tmp_path, "image_size": 16})
    assert data.class_names == [
        "Boots/Ankle",
        "Sandals/Flat",
        "Shoes/Heels",
        "Shoes/Oxfords",
        "Shoes/Sneakers and Athletic Shoes",
        "Slippers/Slipper Flats",
    ]
    table = data.table.set_index("path")
    first = "ut-zap50k-images-square/Shoes/Sneakers and Athletic Shoes/Dolce & Gabbana/8014403.585.jpg"
    assert table.loc[first, "label"] == 4 and table.loc[first, "cid"] == "8014403-585"
    assert table.loc[first, "brand"] == "Dolce & Gabbana"
    assert table.loc["ut-zap50k-images-square/Boots/Ankle/Keen/7892181.326309.jpg", "label"] == 0
    # the label columns are left out; the attribute columns keep their published names
    assert data.aux.attributes == (
        "HeelHeight.Flat",
        "Gender.Men",
        "Material.Faux.Leather",
        "ToeStyle.Round Toe",
    )
    assert table.loc[first, "HeelHeight.Flat"] == 0 and table.loc[first, "ToeStyle.Round Toe"] == 1
    assert table.loc[first, "Material.Faux.Leather"] == 0  # the repeated CID row is ignored
    heels = "ut-zap50k-images-square/Shoes/Heels/T.U.K%2E/7346085.144.jpg"
    assert np.isnan(table.loc[heels, "Gender.Men"])  # no meta-data row: missing
    assert "1 image(s) without a meta-data row" in data.aux.notes and "1 repeated CID" in data.aux.notes
    # 70/30 per sub-category: 10 Oxfords -> 3 test, single images stay in train
    counts = data.table.groupby(["label", "split"]).size().to_dict()
    assert counts[(3, "test")] == 3 and counts[(3, "train")] == 7
    assert (data.table[data.table["label"] != 3]["split"] == "train").all()
    assert data.mean == (0.8342, 0.8142, 0.8081) and data.loader(0).shape == (3, 16, 16)
    again = utzappos_dataset(root=tmp_path, image_size=16)
    assert again.table["split"].tolist() == data.table["split"].tolist()


def test_image_tree_outside_root(tmp_path: Path) -> None:
    write_tree(tmp_path / "elsewhere")
    (tmp_path / "meta" / "ut-zap50k-data").mkdir(parents=True)
    write_bin_csv(tmp_path / "meta")  # root holds only the meta-data
    images = tmp_path / "elsewhere" / "ut-zap50k-images-square"
    data = utzappos_dataset(root=tmp_path / "meta", images_dir=images, image_size=8)
    # paths are relative to the image tree, and they load
    assert "Boots/Ankle/Keen/7892181.326309.jpg" in set(data.table["path"]) and data.root == images
    assert len(data) == len(IMAGES) and data.loader(0).shape == (3, 8, 8)


def test_meta_data_enum_csv_is_expanded(tmp_path: Path) -> None:
    write_tree(tmp_path)
    lines = ['"CID","Category","SubCategory","HeelHeight","Insole","Closure","Gender","Material","ToeStyle"']
    for relative in IMAGES:
        category, sub = relative.split("/")[:2]
        cid = cid_of(relative.rsplit("/", 1)[1])
        closure = '"Lace up;Buckle"' if "Oxfords" in relative else ""
        lines.append(f'"{cid}","{category}","{sub}","Flat","",{closure},"Men","Leather","Round Toe"')
    (tmp_path / "ut-zap50k-data" / "meta-data.csv").write_text("\n".join(lines) + "\n")
    data = utzappos_dataset(root=tmp_path, image_size=8)
    assert data.aux.attributes == (
        "HeelHeight.Flat",
        "Closure.Buckle",
        "Closure.Lace up",
        "Gender.Men",
        "Material.Leather",
        "ToeStyle.Round Toe",
    )
    oxford = data.table[data.table["path"].str.contains("Oxfords")].iloc[0]
    heel = data.table[data.table["path"].str.contains("Heels")].iloc[0]
    assert oxford["Closure.Lace up"] == 1 and oxford["Closure.Buckle"] == 1 and heel["Closure.Buckle"] == 0


def test_errors_and_bad_images(tmp_path: Path) -> None:
    write_tree(tmp_path)
    with pytest.raises(InputError, match=r"meta-data-bin\.csv nor meta-data\.csv"):
        utzappos_dataset(root=tmp_path)
    write_bin_csv(tmp_path)
    bad = tmp_path / "ut-zap50k-images-square" / "Boots" / "Ankle" / "Keen" / "1.2.jpg"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match=r"1\.2\.jpg: empty file"):
        utzappos_dataset(root=tmp_path)
    data = utzappos_dataset(root=tmp_path, skip_bad=True, image_size=8)
    assert data.skipped == {"ut-zap50k-images-square/Boots/Ankle/Keen/1.2.jpg": "empty file"}
    frame = pd.read_csv(tmp_path / "ut-zap50k-data" / "meta-data-bin.csv")
    frame.loc[2, "Gender.Men"] = 7
    frame.to_csv(tmp_path / "ut-zap50k-data" / "meta-data-bin.csv", index=False)
    with pytest.raises(InputError, match=r"row 2, column 'Gender\.Men'"):
        utzappos_dataset(root=tmp_path, skip_bad=True)
    with pytest.raises(InputError, match="no such UT-Zappos50K folder"):
        utzappos_dataset(root=tmp_path / "absent")
