"""ImageFolder trees and metadata tables as datasets; the seeded stratified split."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinfonce.data.folder import file_dataset, imagefolder_dataset, stratified_pick, table_dataset
from clinfonce.data.registry import DATASETS, dataset_from_config, load_dataset
from clinfonce.errors import InputError


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


def test_registry_has_every_loader() -> None:
    expected = {
        "imagefolder",
        "table",
        "utzappos",
        "cub200",
        "wider",
        "imagenet100",
        "cifar10",
        "cifar100",
        "fashion_mnist",
        "omniglot",
    }
    assert expected <= set(DATASETS)


FILE_BACKED = ("imagefolder", "table", "utzappos", "cub200", "wider", "imagenet100")


@pytest.mark.parametrize("name", FILE_BACKED)
def test_file_backed_loaders_forward_the_same_file_options(name: str) -> None:
    """Each file-backed loader spells out file_dataset's options (for --help, configs and introspection);
    they must not drift from it: same names, same defaults (image_size is per dataset)."""
    shared = inspect.signature(file_dataset).parameters
    options = [
        "channels",
        "resize",
        "skip_bad",
        "check_files",
        "workers",
        "max_pixels",
        "val_fraction",
        "seed",
    ]
    loader = inspect.signature(DATASETS[name]).parameters
    assert "image_size" in loader
    assert {k: loader[k].default for k in options} == {k: shared[k].default for k in options}


def test_skip_bad_is_accepted_by_every_source(tmp_path: Path) -> None:
    # the generated dataset has no files to skip: skip_bad is accepted and changes nothing
    shapes = load_dataset("shapes", n_train=8, n_test=4, image_size=16, skip_bad=True)
    assert len(shapes) == 12 and shapes.skipped == {}
    make_flat_folder(tmp_path, {"dog": 3, "cat": 3})
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    section = {"name": "imagefolder", "options": {"root": str(tmp_path), "image_size": 4}, "skip_bad": True}
    folder = dataset_from_config(section)
    assert list(folder.skipped) == ["cat/broken.png"] and len(folder) == 6
    with pytest.raises(InputError, match=r"cat/broken\.png"):
        dataset_from_config({**section, "skip_bad": False})


def test_flat_folder_labels_paths_and_seeded_split(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, {"dog": 10, "cat": 5, "ant": 1})
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    write_image(tmp_path / "cat" / "nested" / "deep.JPG", fmt="JPEG")  # recursive, case-insensitive
    (tmp_path / ".hidden").mkdir()
    write_image(tmp_path / ".hidden" / "x.png")
    data = load_dataset("imagefolder", root=tmp_path, image_size=8)
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


def test_stratified_pick_rules() -> None:
    strata = ["a"] * 10 + ["b"] * 2 + ["c"]
    keys = [f"{i:02d}" for i in range(13)]
    picked = stratified_pick(strata, keys, 0.3, seed=0)
    assert picked[:10].sum() == 3 and picked[10:12].sum() == 1 and not picked[12]
    # the pick of a class does not depend on the order of the rows nor on the other classes
    order = np.random.default_rng(0).permutation(13)
    shuffled = stratified_pick(np.array(strata)[order], np.array(keys)[order], 0.3, seed=0)
    assert np.array_equal(shuffled, picked[order])
    alone = stratified_pick(strata[:10], keys[:10], 0.3, seed=0)
    assert np.array_equal(alone, picked[:10])
    with pytest.raises(InputError):
        stratified_pick(strata, keys, 1.0, seed=0)


# ------------------------------------------------------------------------------------------------- tables


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
        table_path=path,
        path_col="file",
        label_col="species",
        split_col="fold",
        attributes=["striped", "color"],
        tags=["hashtags"],
        hierarchy_col="family",
        image_size=6,
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
    found = table_dataset(table_path=tmp_path / "named.csv", path_col="file", image_size=4)
    assert found.class_names == ["cat", "dog"]
    assert found.table["split"].tolist() == ["train", "train", "val", "test", "test", "train"]
    ignored = table_dataset(
        table_path=tmp_path / "named.csv", path_col="file", label_col=None, split_col=None, image_size=4
    )
    assert ignored.class_names == [] and "val" not in set(ignored.table["split"])
    with pytest.raises(InputError, match="unknown column"):
        table_dataset(table_path=tmp_path / "named.csv", path_col="file", label_col="species", image_size=4)


def test_table_parquet_and_default_split(tmp_path: Path) -> None:
    make_table_fixture(tmp_path)
    frame = pd.read_csv(tmp_path / "meta.csv")
    frame.to_parquet(tmp_path / "meta.parquet")
    data = table_dataset(
        table_path=tmp_path / "meta.parquet", path_col="file", image_size=4, test_fraction=0.5
    )
    assert data.class_names == [] and (data.table["label"] == -1).all()
    assert (data.table["split"] == "test").sum() == 3  # unlabelled rows form one stratum
    data = table_dataset(table_path=tmp_path / "meta.parquet", path_col="file", image_size=4, test_fraction=0)
    assert set(data.table["split"]) == {"train"}
    frame.loc[2, "hashtags"] = None  # in Parquet a null tag list stays missing
    frame.to_parquet(tmp_path / "meta.parquet")
    data = table_dataset(
        table_path=tmp_path / "meta.parquet",
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
        table_path=tmp_path / "meta.parquet",
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
    data = table_dataset(table_path=tmp_path / "t.csv", label_col="y", image_size=4, test_fraction=0)
    assert data.class_names == ["3"] and data.table["label"].tolist() == [0, -1]
    pd.DataFrame({"path": ["a.png"], "y": ["n02084071"]}).to_csv(tmp_path / "w.csv", index=False)
    data = table_dataset(table_path=tmp_path / "w.csv", label_col="y", hierarchy="wordnet", image_size=4)
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
        table_dataset(table_path=tmp_path / "t.csv", root=root, image_size=4)
    assert "t.csv: row 1" in str(error.value)


def test_table_missing_image_fails_or_is_skipped(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png")
    pd.DataFrame({"path": ["ok.png", "gone.png"], "y": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"t\.csv: row 1: .*gone\.png: no such file"):
        table_dataset(table_path=tmp_path / "t.csv", label_col="y", image_size=4)
    data = table_dataset(table_path=tmp_path / "t.csv", label_col="y", image_size=4, skip_bad=True)
    assert data.skipped == {"gone.png": "no such file"}
    assert data.table["path"].tolist() == ["ok.png"] and data.class_names == ["a"]


def test_table_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png"], "split": ["holdout"], "label": ["x"], "h": ["p"]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    with pytest.raises(InputError, match="unknown column"):
        table_dataset(table_path=tmp_path / "t.csv", label_col="nope")
    with pytest.raises(InputError, match="row 0, column 'split': split 'holdout'"):
        table_dataset(table_path=tmp_path / "t.csv", split_col="split")
    with pytest.raises(InputError, match="clash"):
        table_dataset(table_path=tmp_path / "t.csv", attributes=["label"])
    with pytest.raises(InputError, match="no such file"):
        table_dataset(table_path=tmp_path / "absent.csv")
    pd.DataFrame({"path": ["a.png", "a.png"], "y": ["c", "c"], "h": ["p", "q"]}).to_csv(
        tmp_path / "h.csv", index=False
    )
    with pytest.raises(InputError, match="row 1, column 'h'"):
        table_dataset(table_path=tmp_path / "h.csv", label_col="y", hierarchy_col="h")


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
