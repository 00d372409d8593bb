"""Metadata tables of image paths as datasets: columns, splits, auxiliary information, path safety."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_imagefolder import write_image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import table as table_source
from clinfonce.errors import InputError


def table_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return table_source.load(table_source.TableOptions(**options), skip_bad=skip_bad)


def make_table_fixture(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    for i in range(6):
        write_image(images / f"{i}.png", value=20 * i)
    frame = pd.DataFrame(
        {
            "file": [f"images/{i}.png" for i in range(6)],
            "species": ["cat", "dog", "cat", "dog", "cat", None],
            "fold": ["train", "Train", "validation", "test", "TEST", "train"],
            "striped": [1, 0, 1, 0, 1, 0],
            "color": ["red", "blue", "red", "red", "blue", "blue"],
            "hashtags": ["#a #b", "#b", "", "#a", "#c", "#a"],
            "family": ["animal/felid", "animal/canid", "animal/felid", "animal/canid", "animal/felid", None],
        }
    )
    path = tmp_path / "meta.csv"
    frame.to_csv(path, index=False)
    return path


def test_table_dataset_columns_splits_and_aux(tmp_path: Path) -> None:
    path = make_table_fixture(tmp_path)
    data = load_dataset(
        "table",
        {
            "table": path,
            "path_col": "file",
            "label_col": "species",
            "split_col": "fold",
            "attributes": ["striped", "color"],
            "tags": ["hashtags"],
            "hierarchy_col": "family",
            "image_size": 6,
        },
    )
    assert data.class_names == ["cat", "dog"]
    assert data.table["label"].tolist() == [0, 1, 0, 1, 0, -1]
    assert data.table["split"].tolist() == ["train", "train", "val", "test", "test", "train"]
    assert data.table["path"].tolist() == [f"images/{i}.png" for i in range(6)]
    assert data.table["color"].tolist()[:2] == ["red", "blue"]
    assert data.aux.attributes == ("striped", "color") and data.aux.tags == ("hashtags",)
    assert data.table["hashtags"].tolist()[1:3] == ["#b", ""]  # an empty CSV cell: no tags, not missing
    assert data.aux.hierarchy == {
        "animal": None,
        "felid": "animal",
        "canid": "animal",
        "cat": "felid",
        "dog": "canid",
    }
    assert data.root == tmp_path and data.loader(5).shape == (3, 6, 6)


def test_table_label_and_split_columns_are_found_by_name(tmp_path: Path) -> None:
    make_table_fixture(tmp_path)
    frame = pd.read_csv(tmp_path / "meta.csv").rename(columns={"species": "label", "fold": "split"})
    frame.to_csv(tmp_path / "named.csv", index=False)
    found = table_dataset(table=tmp_path / "named.csv", path_col="file", image_size=4)
    assert found.class_names == ["cat", "dog"]
    assert found.table["split"].tolist() == ["train", "train", "val", "test", "test", "train"]
    ignored = table_dataset(
        table=tmp_path / "named.csv", path_col="file", label_col=None, split_col=None, image_size=4
    )
    assert ignored.class_names == [] and "val" not in set(ignored.table["split"])
    with pytest.raises(InputError, match="unknown column"):
        table_dataset(table=tmp_path / "named.csv", path_col="file", label_col="species", image_size=4)


def test_table_parquet_and_default_split(tmp_path: Path) -> None:
    make_table_fixture(tmp_path)
    frame = pd.read_csv(tmp_path / "meta.csv")
    frame.to_parquet(tmp_path / "meta.parquet")
    data = table_dataset(table=tmp_path / "meta.parquet", path_col="file", image_size=4, test_fraction=0.5)
    assert data.class_names == [] and (data.table["label"] == -1).all()
    assert (data.table["split"] == "test").sum() == 3  # unlabelled rows form one stratum
    data = table_dataset(table=tmp_path / "meta.parquet", path_col="file", image_size=4, test_fraction=0)
    assert set(data.table["split"]) == {"train"}
    frame.loc[2, "hashtags"] = None  # in Parquet a null tag list stays missing
    frame.to_parquet(tmp_path / "meta.parquet")
    data = table_dataset(
        table=tmp_path / "meta.parquet",
        path_col="file",
        tags=["hashtags"],
        image_size=4,
        test_fraction=0,
    )
    assert data.table["hashtags"].isna().tolist() == [False, False, True, False, False, False]
    # a missing hierarchy value in a string column (pd.NA) is missing, not a class named "<NA>"
    frame["family"] = frame["family"].astype("string")
    frame.loc[0, "family"] = pd.NA
    frame.to_parquet(tmp_path / "meta.parquet")
    data = table_dataset(
        table=tmp_path / "meta.parquet",
        path_col="file",
        label_col="species",
        hierarchy_col="family",
        image_size=4,
        test_fraction=0,
    )
    assert "<NA>" not in data.aux.hierarchy and data.aux.hierarchy["cat"] == "felid"


def test_table_numeric_labels_and_wordnet(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    pd.DataFrame({"path": ["a.png", "b.png"], "y": [3.0, np.nan]}).to_csv(tmp_path / "t.csv", index=False)
    data = table_dataset(table=tmp_path / "t.csv", label_col="y", image_size=4, test_fraction=0)
    assert data.class_names == ["3"] and data.table["label"].tolist() == [0, -1]
    pd.DataFrame({"path": ["a.png"], "y": ["n02084071"]}).to_csv(tmp_path / "w.csv", index=False)
    data = table_dataset(table=tmp_path / "w.csv", label_col="y", hierarchy="wordnet", image_size=4)
    assert data.aux.hierarchy == "wordnet"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../outside.png", "leaves the image root"),
        ("images/../../outside.png", "leaves the image root"),
        ("/etc/passwd", "absolute"),
        ("escape/outside.png", "resolves outside"),
        ("", "missing image path"),
    ],
)
def test_table_paths_must_stay_inside_root(tmp_path: Path, value: str, message: str) -> None:
    root = tmp_path / "root"
    write_image(root / "ok.png")
    write_image(tmp_path / "outside.png")
    os.symlink(tmp_path, root / "escape")
    pd.DataFrame({"path": ["ok.png", value]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=message) as error:
        table_dataset(table=tmp_path / "t.csv", root=root, image_size=4)
    assert "t.csv: row 1" in str(error.value)


def test_table_missing_image_fails_or_is_skipped(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png")
    pd.DataFrame({"path": ["ok.png", "gone.png"], "y": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"t\.csv: row 1: .*gone\.png: no such file"):
        table_dataset(table=tmp_path / "t.csv", label_col="y", image_size=4)
    data = table_dataset(table=tmp_path / "t.csv", label_col="y", image_size=4, skip_bad=True)
    assert data.skipped == {"gone.png": "no such file"}
    assert data.table["path"].tolist() == ["ok.png"] and data.class_names == ["a"]


def test_table_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png"], "split": ["holdout"], "label": ["x"], "h": ["p"]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    with pytest.raises(InputError, match="unknown column"):
        table_dataset(table=tmp_path / "t.csv", label_col="nope")
    with pytest.raises(InputError, match="row 0, column 'split': split 'holdout'"):
        table_dataset(table=tmp_path / "t.csv", split_col="split")
    with pytest.raises(InputError, match="clash"):
        table_dataset(table=tmp_path / "t.csv", attributes=["label"])
    with pytest.raises(InputError, match="no such file"):
        table_dataset(table=tmp_path / "absent.csv")
    pd.DataFrame({"path": ["a.png", "a.png"], "y": ["c", "c"], "h": ["p", "q"]}).to_csv(
        tmp_path / "h.csv", index=False
    )
    with pytest.raises(InputError, match="row 1, column 'h'"):
        table_dataset(table=tmp_path / "h.csv", label_col="y", hierarchy_col="h")


LABEL_COLUMNS = {
    "integral floats and NaN": pd.Series([3.0, np.nan, 1.0, 3.0, 10.0]),
    "text with blanks": pd.Series([" cat", "dog ", "", None, "cat", "   "], dtype=object),
    "mixed objects": pd.Series([1, "1", 2.5, None, np.nan, pd.NA, "b"], dtype=object),
    "nullable integers": pd.Series([4, None, 4, 7], dtype="Int64"),
    "arrow strings": pd.Series(["x", None, "y", "x"], dtype="str"),
}


@pytest.mark.parametrize("column", LABEL_COLUMNS.values(), ids=LABEL_COLUMNS.keys())
def test_label_names_and_ids_equal_a_row_by_row_reference(column: pd.Series) -> None:
    """Class names and ids are computed once per distinct value; they equal converting every row."""
    from clinfonce.data.dataset import encode_labels

    values = column
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    expected = [None if pd.isna(v) else (str(v).strip() or None) for v in values.tolist()]
    names = table_source.label_names(column)
    assert list(names) == expected
    classes = sorted({name for name in expected if name is not None})
    labels, got_classes = encode_labels(names)
    assert got_classes == classes
    assert labels.tolist() == [-1 if name is None else classes.index(name) for name in expected]
    with pytest.raises(InputError, match="not in the source's class list"):
        encode_labels(["a", "zz"], all_classes=["a"])
