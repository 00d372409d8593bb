"""UTKFace: meta.csv and images/ as the research copy has them; labels, attributes, the negative control,
the seeded split, bad rows; and the real copy in ../shared/datasets when it is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError

REAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "utkface"
ROWS = [  # age, gender, race, capture time (as in the file names)
    (1, 0, 2, "20161219190118219"), (26, 0, 0, "20170119180141460"), (27, 1, 4, "20170103235752276"),
    (58, 0, 1, "20170120222805833"), (75, 1, 3, "20170110183726390"), (35, 1, None, "20170109150557335"),
    (8, 0, 0, "20170104011130512"), (64, 1, 1, "20170117154210456"),
]  # fmt: skip


def write_utkface(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    paths = []
    for i, (age, gender, race, stamp) in enumerate(ROWS):
        name = f"{age}_{gender}_{race}_{stamp}.jpg" if race is not None else f"{age}_{gender}_{stamp}.jpg"
        Image.new("RGB", (20, 20), (10 * i, 200 - 10 * i, 90)).save(root / "images" / name, quality=95)
        paths.append(name)
    meta = pd.DataFrame({"path": paths, "age": [r[0] for r in ROWS], "gender": [r[1] for r in ROWS]})
    meta["race"] = pd.array([r[2] for r in ROWS], dtype="Int64")
    meta.to_csv(root / "meta.csv", index=False)
    return root


def test_labels_attributes_and_the_capture_time(tmp_path) -> None:
    data = load_dataset(
        "utkface", {"root": str(write_utkface(tmp_path)), "image_size": 16, "test_fraction": 0.25}
    )
    table = data.table
    names = [data.class_names[i] for i in table["label"]]
    assert names == ["00-02", "20-29", "20-29", "50-59", "70+", "30-39", "03-09", "60-69"]
    assert data.aux.attributes == ("gender", "race")  # never the label
    assert table["gender"].tolist() == [
        "male",
        "male",
        "female",
        "male",
        "female",
        "female",
        "male",
        "female",
    ]
    assert table["race"].tolist()[:5] == ["Asian", "White", "Others", "Black", "Indian"]
    assert pd.isna(table["race"].iloc[5]) and "1 image(s) without a race" in data.aux.notes
    assert table["capture_day"].tolist()[:2] == ["2016-12-19", "2017-01-19"]
    assert table["capture_hour"].tolist()[:2] == [19, 18]
    assert data.loader(0).shape == (3, 16, 16) and data.image_input.channels == 3
    by_gender = load_dataset("utkface", {"root": str(tmp_path), "image_size": 16, "label": "gender"})
    assert by_gender.class_names == ["female", "male"] and by_gender.aux.attributes == ("age_group", "race")


def test_the_split_is_seeded_and_stratified(tmp_path) -> None:
    root = str(write_utkface(tmp_path))
    a = load_dataset("utkface", {"root": root, "image_size": 16, "label": "gender", "test_fraction": 0.5})
    b = load_dataset("utkface", {"root": root, "image_size": 16, "label": "gender", "test_fraction": 0.5})
    assert a.table["split"].tolist() == b.table["split"].tolist()
    counts = a.table.groupby(["label", "split"]).size().unstack()
    assert (counts["test"] == 2).all() and (counts["train"] == 2).all()  # half of each gender's four


def test_train_per_class_keeps_a_seeded_sample_and_never_opens_the_rest(tmp_path) -> None:
    root = write_utkface(tmp_path)
    options = {"root": str(root), "image_size": 16, "label": "gender", "test_fraction": 0.5}
    whole = load_dataset("utkface", options)
    training = whole.table[whole.table["split"] == "train"]
    left_out = set(training["path"])
    sample = load_dataset("utkface", {**options, "train_per_class": 1})
    kept = sample.table[sample.table["split"] == "train"]
    assert kept.groupby("label").size().tolist() == [1, 1]  # one of each gender's two training images
    assert set(kept["path"]) <= left_out
    test_rows = whole.table[whole.table["split"] == "test"]["path"]
    assert sample.table[sample.table["split"] == "test"]["path"].tolist() == test_rows.tolist()  # whole
    for path in left_out - set(kept["path"]):  # images the sample leaves out are never opened
        (root / "images" / path).write_bytes(b"not a jpeg")
    again = load_dataset("utkface", {**options, "train_per_class": 1})
    assert again.table["path"].tolist() == sample.table["path"].tolist()  # seeded


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m.assign(gender=[0, 1, 2, 0, 1, 1, 0, 1]),
            "row 2: column 'gender' has '2', expected 0..1 or empty",
        ),
        (lambda m: m.assign(age=["1", "x", *["30"] * 6]), "row 1: column 'age'"),
        (lambda m: m.drop(columns="race"), "unknown column.*'race'"),
        (lambda m: m.assign(path=["../x.jpg", *m["path"][1:]]), "leaves the image root"),
    ],
)
def test_bad_rows_name_the_row_or_column(tmp_path, edit, message) -> None:
    root = write_utkface(tmp_path)
    edit(pd.read_csv(root / "meta.csv")).to_csv(root / "meta.csv", index=False)
    with pytest.raises(InputError, match=message):
        load_dataset("utkface", {"root": str(root), "image_size": 16})


@pytest.mark.skipif(not (REAL / "meta.csv").is_file(), reason="../shared/datasets/utkface is not here")
def test_real_utkface() -> None:
    data = load_dataset("utkface", {"root": str(REAL), "image_size": 32, "check_files": False})
    assert len(data) == 23317 and data.n_classes == 9
    assert int((data.table["split"] == "test").sum()) == 4664  # 20 % of each age group, rounded per group
    assert int(data.table["race"].isna().sum()) == 3
    counts = np.bincount(data.table["label"], minlength=9)
    assert counts.tolist() == [1599, 1433, 1511, 7199, 4473, 2207, 2260, 1293, 1342]  # 00-02, 03-09, ..., 70+
