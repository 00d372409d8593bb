"""Hugging Face datasets on disk (save_to_disk folders, Parquet): read against the same images as files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from clinfonce.clusters import ClusterSpec, build_for_dataset
from clinfonce.data.files import FileImageLoader
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError

datasets = pytest.importorskip("datasets")


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)) for _ in range(n)]


def features(names=("cat", "dog", "fox")):
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(names)),
            "tags": datasets.Value("string"),
            "file": datasets.Value("string"),
        }
    )


def columns(n: int, start: int = 0) -> dict:
    return {
        "image": pictures(start + n)[start:],
        "label": [i % 3 for i in range(start, start + n)],
        "tags": [f"#a #t{i % 2}" for i in range(start, start + n)],
        "file": [f"img{i}" for i in range(start, start + n)],
    }


@pytest.fixture()
def saved(tmp_path):
    """A DatasetDict (train 9, test 3) saved with save_to_disk, and the images as PNG files."""
    full = datasets.Dataset.from_dict(columns(12), features=features())
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": full.select(range(9)), "test": full.select(range(9, 12))}).save_to_disk(
        str(folder)
    )
    files = tmp_path / "files"
    files.mkdir()
    for i, picture in enumerate(pictures(12)):
        picture.save(files / f"{i}.png")
    return folder, files


def test_a_saved_dataset_dict_reads_splits_labels_columns_and_images(saved) -> None:
    folder, files = saved
    dataset = load_dataset("hf", {"path": str(folder), "image_size": 10, "id_col": "file"})
    table = dataset.table
    assert table["path"].tolist() == [f"img{i}" for i in range(12)]
    assert table["split"].tolist() == ["train"] * 9 + ["test"] * 3
    assert dataset.class_names == ["cat", "dog", "fox"]  # the ClassLabel's names
    assert table["label"].tolist() == [i % 3 for i in range(12)] and "image" not in table.columns
    reference = FileImageLoader(files, [f"{i}.png" for i in range(12)], 10)
    for row in range(12):
        assert torch.equal(dataset.loader(row), reference(row)), row
    clusters = build_for_dataset(
        ClusterSpec(source="attributes", tags=["tags"], top_k=2), dataset, dataset.rows("train")
    )
    assert clusters.n == 9 and clusters.n_clusters == 2


def test_parquet_files_are_training_data_with_a_seeded_test_split(tmp_path) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    datasets.Dataset.from_dict(columns(6), features=features()).to_parquet(str(folder / "a.parquet"))
    datasets.Dataset.from_dict(columns(6, 6), features=features()).to_parquet(str(folder / "b.parquet"))
    dataset = load_dataset(
        "hf",
        {"path": str(folder), "image_size": 8, "cache_dir": str(tmp_path / "cache"), "test_fraction": 0.25},
    )
    assert len(dataset) == 12 and (dataset.table["split"] == "test").sum() == 3  # one per class of 4
    assert dataset.table["path"].tolist()[:2] == ["train/0", "train/1"]
    pictures(12)[7].save(tmp_path / "7.png")
    assert torch.equal(dataset.loader(7), FileImageLoader(tmp_path, ["7.png"], 8)(0))


def test_bytes_and_path_columns(tmp_path) -> None:
    import io

    raw = []
    for i, picture in enumerate(pictures(4)):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        raw.append(buffer.getvalue())
        picture.save(tmp_path / f"{i}.png")
    as_bytes = datasets.Dataset.from_dict({"png": raw, "label": ["a", "b", "a", "b"]})
    as_bytes.save_to_disk(str(tmp_path / "bytes"))
    as_paths = datasets.Dataset.from_dict(
        {"png": [f"{i}.png" for i in range(4)], "label": ["a", "b", "a", "b"]}
    )
    as_paths.save_to_disk(str(tmp_path / "paths"))
    options = {"image_col": "png", "image_size": 8, "test_fraction": 0}
    one = load_dataset("hf", {"path": str(tmp_path / "bytes"), **options})
    two = load_dataset("hf", {"path": str(tmp_path / "paths"), "root": str(tmp_path), **options})
    for row in range(4):
        assert torch.equal(one.loader(row), two.loader(row))
    assert one.class_names == ["a", "b"]


def test_clear_errors(saved, tmp_path) -> None:
    import io

    folder, _ = saved
    with pytest.raises(InputError, match=r"no split 'holdout' \(test\); splits: \['train', 'test'\]"):
        load_dataset("hf", {"path": str(folder), "test_split": "holdout"})
    with pytest.raises(InputError, match=r"no column 'picture'"):
        load_dataset("hf", {"path": str(folder), "image_col": "picture"})
    with pytest.raises(InputError, match="no dataset here"):
        load_dataset("hf", {"path": str(tmp_path / "nothing-*.parquet")})
    good = io.BytesIO()
    pictures(1)[0].save(good, format="PNG")
    broken = datasets.Dataset.from_dict({"image": [b"not an image", good.getvalue()], "label": ["a", "a"]})
    broken.save_to_disk(str(tmp_path / "broken"))
    dataset = load_dataset("hf", {"path": str(tmp_path / "broken"), "test_fraction": 0, "image_size": 8})
    with pytest.raises(InputError, match=r"train/0: not an image"):
        dataset.loader(0)
    command = [sys.executable, "-m", "clinfonce", "data", "check", "--dataset", "hf", "--data-option",
               f"path={tmp_path / 'broken'}", "--data-option", "check_files=true", "--data-option", "test_fraction=0"]  # fmt: skip
    checked = subprocess.run(command, capture_output=True, text=True)
    assert checked.returncode == 1 and "train/0" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
