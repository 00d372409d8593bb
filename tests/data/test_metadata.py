"""data.options.metadata: a table joined to any dataset's images by path, with its gaps counted."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinfonce.clusters import ClusterSpec, build_for_dataset
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError


@pytest.fixture()
def folder(tmp_path):
    """An image folder of 2 classes x 4 images."""
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (40 * i, 100, 30)).save(root / label / f"{i}.png")
    return root


def write(tmp_path, frame: pd.DataFrame, name: str = "meta.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_columns_join_by_path_with_gaps_counted(tmp_path, folder) -> None:
    tags = {"cat/0.png": "#a #b", "cat/2.png": "#b", "dog/1.png": "", "dog/3.png": "#a", "fox/9.png": "#c"}
    meta = write(tmp_path, pd.DataFrame({"path": list(tags), "tags": list(tags.values()), "n": range(5)}))
    dataset = load_dataset("imagefolder", {"root": str(folder), "image_size": 8, "metadata": meta})
    table = dataset.table.set_index("path")
    for path in table.index:
        expected = tags.get(path) or None  # a CSV's empty cell reads as missing (read_table's rule)
        got = table.loc[path, "tags"]
        assert got == expected if expected is not None else pd.isna(got), path
    assert table.loc["cat/2.png", "n"] == 1 and pd.isna(table.loc["cat/1.png", "n"])
    assert (
        "4 image(s) without a row" in dataset.aux.notes and "1 row(s) matching no image" in dataset.aux.notes
    )
    clusters = build_for_dataset(ClusterSpec(source="attributes", tags=["tags"], top_k=2), dataset)
    # the 4 images without a row and the empty cell are missing, never guessed: singletons, counted
    assert clusters.provenance["n_missing_rows"] == 5


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"file": ["cat/0.png"], "t": ["a"]}), "path"),
        (
            pd.DataFrame({"path": ["cat/0.png", "cat/0.png"], "t": ["a", "b"]}),
            r"listed more than once \(rows \[0, 1\]\)",
        ),
        (pd.DataFrame({"path": ["cat/0.png"], "label": [3]}), r"column\(s\) \['label'\] are columns"),
    ],
)
def test_bad_tables_are_one_clear_error(tmp_path, folder, frame, message) -> None:
    meta = write(tmp_path, frame)
    with pytest.raises(InputError, match=message):
        load_dataset("imagefolder", {"root": str(folder), "image_size": 8, "metadata": meta})


def test_data_check_reports_the_join_and_a_missing_table_is_one_line(tmp_path, folder) -> None:
    meta = write(tmp_path, pd.DataFrame({"path": ["cat/0.png"], "tags": ["#x"]}))
    command = [sys.executable, "-m", "clinfonce", "data", "check", "--dataset", "imagefolder", "--root",
               str(folder), "--data-option", "image_size=8", "--data-option"]  # fmt: skip
    ok = subprocess.run([*command, f"metadata={meta}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "7 image(s) without a row" in ok.stdout + ok.stderr
    missing = subprocess.run([*command, f"metadata={tmp_path / 'nope.csv'}"], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_in_memory_datasets_join_too(tmp_path) -> None:
    root = "../shared/datasets/omniglot"
    import os

    if not os.path.isdir(root):
        pytest.skip("the Omniglot zips are not in ../shared/datasets/omniglot")
    plain = load_dataset("omniglot", {"root": root, "image_size": 28})
    paths = plain.table["path"].to_numpy()[:10]
    table = pd.DataFrame({"path": paths, "tags": [f"t{i % 3}" for i in range(10)]})
    with_tags = load_dataset(
        "omniglot",
        {"root": root, "image_size": 28, "metadata": write(tmp_path, table)},
    )
    assert with_tags.table["tags"].notna().sum() == 10
    assert np.array_equal(with_tags.table["path"].to_numpy(), plain.table["path"].to_numpy())
