"""`clinfonce clusters` and `clinfonce data check` on every registered source, each from a fixture in its
published layout (the fixtures are the ones the loader tests use)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from test_cifar import write_cifar10, write_cifar100
from test_cub200 import write_cub
from test_fashion_mnist import write_fashion
from test_imagenet100 import write_imagenet
from test_omniglot import write_omniglot_zip
from test_table import make_table_fixture
from test_utkface import write_utkface
from test_utzappos import write_bin_csv, write_tree
from test_webdataset import sample, write_shard
from test_wider import write_wider

from clinfonce.cli import main
from clinfonce.data.registry import DATASETS

WORDNET = Path("/usr/share/wordnet/data.noun")


def _utzappos(root: Path) -> list[str]:
    write_tree(root)
    write_bin_csv(root)
    return ["--root", str(root)]


def _omniglot(root: Path) -> list[str]:
    root.mkdir()
    write_omniglot_zip(
        root / "images_background_small1.zip", {"Aleph/character01": "0001", "Greek/character01": "0394"}
    )
    return ["--root", str(root)]


def _imagenet100(root: Path) -> list[str]:
    class_list = write_imagenet(root)
    return ["--root", str(root), "--data-option", f"class_list={class_list}"]


def _table(root: Path) -> list[str]:
    root.mkdir()
    path = make_table_fixture(root)
    options = [f"table={path}", "path_col=file", "label_col=species", "split_col=fold"]
    options += ["attributes=[striped, color]", "tags=[hashtags]"]
    return ["--root", str(root), *[f"--data-option={option}" for option in options]]


def _webdataset(root: Path) -> list[str]:
    root.mkdir()
    for number in range(2):
        write_shard(root / f"part-{number}.tar", [
            sample(f"{number}_{i}", i, {"label": f"class{i % 2}", "colour": ["red", "blue"][i % 2],
                                        "shiny": i % 3 == 0, "split": "test" if i == 5 else "train"})
            for i in range(6)
        ])  # fmt: skip
    options = ["shards=[part-0.tar, part-1.tar]", "attributes=[colour, shiny]"]
    return ["--root", str(root), *[f"--data-option={option}" for option in options]]


def _hf(root: Path) -> list[str]:
    import datasets
    import numpy as np
    from PIL import Image

    pictures = [Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)) for i in range(6)]
    columns = {
        "image": pictures,
        "label": [f"class{i % 2}" for i in range(6)],
        "colour": ["red", "blue", "green"] * 2,
    }
    full = datasets.Dataset.from_dict(columns)
    datasets.DatasetDict({"train": full.select(range(4)), "test": full.select(range(4, 6))}).save_to_disk(
        str(root)
    )
    return [f"--data-option=path={root}", "--data-option=attributes=[colour]"]


#: source -> (fixture writer returning the source arguments, stage-1 arguments, expected row count)
SOURCES: dict[str, tuple[Callable[[Path], list[str]], list[str], int]] = {
    "table": (_table, ["--top-k", "2"], 6),
    "utzappos": (_utzappos, ["--top-k", "3"], 15),
    "cub200": (lambda root: ["--root", str(write_cub(root))], ["--top-k", "2"], 5),
    "wider": (lambda root: ["--root", str(write_wider(root))], ["--top-k", "2"], 4),
    "imagenet100": (_imagenet100, ["--level", "8"], 10),
    "cifar100": (lambda root: ["--root", str(write_cifar100(root))], ["--level", "0"], 8),
    "fashion_mnist": (lambda root: (write_fashion(root), ["--root", str(root)])[1], ["--level", "1"], 7),
    "omniglot": (_omniglot, ["--level", "0"], 40),
    "utkface": (lambda root: ["--root", str(write_utkface(root))], ["--top-k", "2"], 8),
    "webdataset": (_webdataset, ["--top-k", "2"], 12),
    "hf": (_hf, ["--top-k", "2"], 6),
}

#: for the hierarchies written by hand in the fixtures: the cluster each class must land in (by hand,
#: from the published taxonomies); the other sources cluster by attributes (or by WordNet, imagenet100)
EXPECTED_GROUP = {
    "cifar100": {"apple": "fruit", "pear": "fruit", "aquarium_fish": "fish", "bear": "large_carnivores"}.get,
    "fashion_mnist": {
        "Ankle boot": "footwear",
        "T-shirt/top": "tops",
        "Dress": "one-piece",
        "Pullover": "tops",
    }.get,
    "omniglot": lambda label: label.split("/")[0],  # the alphabet
}

#: the auxiliary values each fixture leaves missing on purpose
MISSING = {
    "cub200": "has_bill_shape::hooked: 1",
    "utzappos": "HeelHeight.Flat: 1",
    "wider": "Male: 2",
    "utkface": "race: 1",
}


def test_every_source_with_auxiliary_information_is_covered() -> None:
    # imagefolder (WordNet levels) is covered in tests/test_cli_datasets.py; shapes by the demo tests;
    # cifar10 has no auxiliary information (see the last test)
    assert set(SOURCES) | {"imagefolder", "shapes", "cifar10"} == set(DATASETS)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_clusters_and_data_check(name: str, tmp_path: Path, capsys) -> None:
    write, stage1, n_rows = SOURCES[name]
    if name == "imagenet100" and not WORDNET.exists():
        pytest.skip("WordNet not installed (apt-get install wordnet-base)")
    source = write(tmp_path / "data")
    small = ["--data-option", "image_size=8"]
    out = tmp_path / "clusters.csv"
    assert main(["clusters", "--dataset", name, *source, *small, *stage1, "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert written.columns.tolist() == ["path", "label", "cluster"]
    assert len(written) == n_rows and written["path"].notna().all() and written["cluster"].ge(0).all()
    assert not written["path"].str.startswith("/").any()  # relative to the dataset's root
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["method"] == ("attributes" if "--top-k" in stage1 else "hierarchy")
    assert meta["n_clusters"] == written["cluster"].nunique() >= 2
    if name in EXPECTED_GROUP:  # the clusters are exactly the hand-derived groups (same partition)
        written["group"] = written["label"].map(EXPECTED_GROUP[name])
        assert written["group"].notna().all()
        assert (written.groupby("cluster")["group"].nunique() == 1).all()
        assert (written.groupby("group")["cluster"].nunique() == 1).all()
    capsys.readouterr()
    status = main(["data", "check", "--dataset", name, *source, *small])
    report = capsys.readouterr().out
    assert f"{name}: {n_rows} images" in report and "bad file" not in report
    assert status == 0 and "no problems found" in report  # missing auxiliary values are notes
    if name in MISSING:
        column, count = MISSING[name].split(": ")
        assert f"note: {column}: {count} missing value(s)" in report


def test_a_source_without_auxiliary_information_says_so(tmp_path: Path, capsys) -> None:
    root = write_cifar10(tmp_path)
    args = [
        "clusters",
        "--dataset",
        "cifar10",
        "--root",
        str(root),
        "--top-k",
        "2",
        "--out",
        str(tmp_path / "c.csv"),
    ]
    assert main(args) == 2
    assert "has no auxiliary attributes" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()
