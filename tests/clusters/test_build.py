"""One stage-1 builder: for every source, `clinfonce clusters` flags and a config's `clusters` section give
the same ids, and those ids equal the ones derived by hand from the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_wordnet import SYNSETS, write_data_noun

from clinfonce.cli import main
from clinfonce.clusters import ClusterSpec, build, build_for_dataset
from clinfonce.config import load_config
from clinfonce.errors import InputError

N = 48


@pytest.fixture
def data(tmp_path):
    """A table dataset of tiny PNGs: classes dog/puppy/cat with attributes, tags, numbers and a parents CSV."""
    rng = np.random.default_rng(0)
    classes = np.array(["dog", "puppy", "cat"])[np.arange(N) % 3]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(images / f"{i:02d}.png")
    table = pd.DataFrame(
        {
            "path": [f"{i:02d}.png" for i in range(N)],
            "label": classes,
            "split": np.where(np.arange(N) < 36, "train", "test"),
            "furry": classes != "cat",
            "color": np.where(np.arange(N) % 10 == 0, "blue", "red"),  # entropy 0.47 < furry's 0.92
            "size": rng.normal(10, 3, N).round(2),
            "tags": np.where(classes == "cat", "a;b", "c"),
        }
    )
    table.to_csv(tmp_path / "meta.csv", index=False)
    pd.DataFrame(
        {
            "child": ["dog", "puppy", "cat", "canine", "feline"],
            "parent": ["canine", "dog", "feline", "animal", "animal"],
        }
    ).to_csv(tmp_path / "parents.csv", index=False)
    np.save(
        tmp_path / "features.npy", np.where((classes == "cat")[:, None], 4.0, -4.0) + rng.normal(size=(N, 3))
    )
    return tmp_path, table


def _cli_ids(tmp_path, flags: list[str]) -> np.ndarray:
    out = tmp_path / "cli.csv"
    base = [
        "clusters",
        "--dataset",
        "table",
        "--table",
        str(tmp_path / "meta.csv"),
        "--root",
        str(tmp_path / "images"),
    ]
    assert main([*base, "--data-option", "image_size=4", *flags, "--out", str(out)]) == 0
    return pd.read_csv(out)["cluster"].to_numpy()


def _table_data(tmp_path) -> dict:
    """The config's ``data`` section for the fixture's table."""
    options = {"table": str(tmp_path / "meta.csv"), "root": str(tmp_path / "images"), "image_size": 4}
    return {"name": "table", "options": options}


def _config_ids(tmp_path, clusters: dict) -> np.ndarray:
    config = load_config(
        {"data": _table_data(tmp_path)}, {f"clusters.{key}": value for key, value in clusters.items()}
    )
    return build_for_dataset(config.clusters, config.data.load()).ids


def _same_partition(ids: np.ndarray, tokens) -> bool:
    """Whether ``ids`` group the rows exactly as the hand-derived ``tokens`` do."""
    pairs = set(zip(ids.tolist(), pd.Series(tokens).astype(str).tolist(), strict=True))
    return len(pairs) == len(set(ids.tolist())) == len(set(pd.Series(tokens).astype(str)))


@pytest.mark.parametrize(
    ("flags", "clusters", "expected"),
    [
        (
            ["--attributes", "furry,color", "--top-k", "1"],
            {"source": "attributes", "attributes": "furry,color", "top_k": 1},
            lambda t: t["furry"],  # the highest-entropy binary attribute is 'furry' (2/3 vs 1/3)
        ),
        (
            ["--tags", "tags", "--tag-separator", ";", "--top-k", "2"],
            {"source": "attributes", "tags": ["tags"], "tag_separator": ";", "top_k": 2},
            lambda t: t["tags"],
        ),
        (
            ["--attributes", "size", "--bins", "size=-100:10:100", "--top-k", "1"],
            {"source": "attributes", "attributes": ["size"], "bins": {"size": [-100, 10, 100]}, "top_k": 1},
            lambda t: t["size"] >= 10,
        ),
        (
            ["--hierarchy", "{parents}", "--level", "1"],
            {"source": "hierarchy", "hierarchy": "{parents}", "level": 1},
            lambda t: t["label"] == "cat",
        ),
        (
            ["--source", "labels"],
            {"source": "labels"},
            lambda t: t["label"],
        ),
        (
            ["--features", "{features}", "--k", "2", "--seed", "3"],
            {"source": "kmeans", "features": "{features}", "k": 2, "seed": 3},
            lambda t: t["label"] == "cat",
        ),
    ],
    ids=["attributes", "tags", "bins", "hierarchy-csv", "labels", "kmeans"],
)
def test_cli_and_config_give_identical_ids(data, flags, clusters, expected) -> None:
    tmp_path, table = data
    paths = {"parents": str(tmp_path / "parents.csv"), "features": str(tmp_path / "features.npy")}
    flags = [flag.format(**paths) for flag in flags]
    clusters = {k: v.format(**paths) if isinstance(v, str) else v for k, v in clusters.items()}
    cli, config = _cli_ids(tmp_path, flags), _config_ids(tmp_path, clusters)
    np.testing.assert_array_equal(cli, config)
    assert _same_partition(cli, expected(table))


def test_wordnet_directory_both_ways(data) -> None:
    tmp_path, table = data
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    ids = write_data_noun(wordnet, SYNSETS)
    meta = table.assign(
        label=table["label"].map({"dog": ids["dog"], "puppy": ids["puppy"], "cat": ids["lassie"]})
    )
    meta.to_csv(tmp_path / "meta.csv", index=False)
    flags = ["--hierarchy", "wordnet", "--wordnet-dir", str(wordnet), "--level", "4"]
    cli = _cli_ids(tmp_path, flags)
    config = _config_ids(
        tmp_path, {"source": "hierarchy", "hierarchy": "wordnet", "wordnet_dir": str(wordnet), "level": 4}
    )
    np.testing.assert_array_equal(cli, config)
    # level 4 is entity/object/animal/canine/dog: dog and puppy -> dog; Lassie (an instance of dog) -> dog
    assert len(set(cli.tolist())) == 1


def test_clusters_file_both_ways(data) -> None:
    tmp_path, table = data
    _cli_ids(tmp_path, ["--source", "labels"])  # writes cli.csv with path, label, cluster
    (tmp_path / "cli.csv").rename(tmp_path / "from_labels.csv")
    (tmp_path / "cli.json").rename(tmp_path / "from_labels.json")
    shuffled = pd.read_csv(tmp_path / "from_labels.csv").sample(frac=1, random_state=0)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)  # matched by path, not by order
    cli = _cli_ids(tmp_path, ["--file", str(tmp_path / "shuffled.csv")])
    config = _config_ids(tmp_path, {"source": "file", "file": str(tmp_path / "shuffled.csv")})
    np.testing.assert_array_equal(cli, config)
    assert _same_partition(cli, table["label"])


def test_dataset_own_attributes_by_default(data) -> None:
    tmp_path, _ = data
    meta = pd.read_csv(tmp_path / "meta.csv")
    spec = ClusterSpec(source="attributes", top_k=1)
    with pytest.raises(InputError, match="has no auxiliary attributes of its own"):
        build(spec, meta, name="meta.csv")  # a bare table has no attributes of its own


def test_training_writes_the_config_clusters(data) -> None:
    """The run's clusters.csv (training rows) equals `clinfonce clusters` on the same settings."""
    tmp_path, table = data
    from clinfonce.training.engine import train

    flags = ["--attributes", "furry,color", "--top-k", "2"]
    config = load_config(
        {
            "data": _table_data(tmp_path),
            "clusters": {"source": "attributes", "attributes": ["furry", "color"], "top_k": 2},
            "model": {"width": 2, "head_dim": 4},
            "optim": {"batch_size": 12},
            "train": {"epochs": 1, "out": str(tmp_path / "run"), "progress_bar": False},
        }
    )
    run = train(config)
    written = pd.read_csv(run.files.clusters_path)
    out = tmp_path / "train_rows.csv"
    train_table = table[table["split"] == "train"]
    train_table.to_csv(out, index=False)
    assert main(["clusters", "--table", str(out), *flags, "--out", str(tmp_path / "c.csv")]) == 0
    assert written["path"].tolist() == train_table["path"].tolist()
    np.testing.assert_array_equal(written["cluster"], pd.read_csv(tmp_path / "c.csv")["cluster"])
    # and, derived by hand, the training rows grouped by both attributes (furry and color=blue: the only two)
    assert _same_partition(
        written["cluster"].to_numpy(), train_table["furry"].astype(str) + train_table["color"]
    )
