"""The clusters and stats commands: outputs checked against the library, user errors exit 2 in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score

from clinfonce.cli import main


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "label": rng.integers(0, 4, n)})
    frame["round"] = frame["label"] < 2
    frame["color"] = np.where(frame["label"] % 2 == 0, "red", "blue")
    frame["noise"] = rng.random(n) < 0.5
    frame["tags"] = ["#a #b" if label == 0 else "#c" for label in frame["label"]]
    frame["wnid"] = np.where(frame["label"] < 2, "dog", "cat")
    path = tmp_path / "meta.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_attribute_clusters_written_with_provenance(table, tmp_path, capsys) -> None:
    path, frame = table
    out = tmp_path / "out" / "clusters.csv"
    args = ["clusters", "--table", str(path), "--attributes", "round,color,noise", "--top-k", "2"]
    assert main([*args, "--label-col", "label", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert written.columns.tolist() == ["path", "label", "cluster"]
    meta = json.loads(out.with_suffix(".json").read_text())
    # by brute force: the two columns of highest binary entropy (color has two values: one attribute) ...
    bits = {
        "round": frame["round"],
        "color=blue": frame["color"] == "blue",
        "color=red": frame["color"] == "red",
        "noise": frame["noise"],
    }
    rate = {name: float(value.mean()) for name, value in bits.items()}
    entropy = {name: -(p * np.log2(p) + (1 - p) * np.log2(1 - p)) for name, p in rate.items()}
    chosen = meta["provenance"]["attributes"]
    columns = {"round": entropy["round"], "color": entropy["color=blue"], "noise": entropy["noise"]}
    assert [name.split("=")[0] for name in chosen] == sorted(columns, key=lambda c: -columns[c])[:2]
    # ... and the rows grouped by their bits on them, the clusters numbered in the order of the bit patterns
    patterns = list(zip(*(bits[name].astype(int) for name in chosen), strict=True))
    number = {pattern: i for i, pattern in enumerate(sorted(set(patterns)))}
    assert written["cluster"].tolist() == [number[pattern] for pattern in patterns]
    assert meta["provenance"]["k"] == 2 and meta["n_clusters"] == len(number) == 4
    assert "I(Z;T)" in capsys.readouterr().out


def test_stats_json_matches_scikit_learn(table, capsys) -> None:
    path, frame = table
    assert (
        main(["stats", "--table", str(path), "--cluster-col", "color", "--label-col", "label", "--json"]) == 0
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["I_Z_T"] == pytest.approx(mutual_info_score(frame["label"], frame["color"]) / np.log(2))
    assert set(stats) >= {"n", "n_clusters", "H_Z", "H_T", "H_Z_given_T", "H_T_given_Z", "I_Z_T"}


def test_hierarchy_from_edge_table(table, tmp_path) -> None:
    path, frame = table
    edges = tmp_path / "parents.csv"
    pd.DataFrame(
        {"child": ["dog", "cat", "canine", "feline"], "parent": ["canine", "feline", "animal", "animal"]}
    ).to_csv(edges, index=False)
    out = tmp_path / "h.csv"
    args = ["clusters", "--table", str(path), "--label-col", "wnid", "--hierarchy", str(edges)]
    assert main([*args, "--level", "1", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    # level 1: canine vs feline, ids by sorted key (canine=0, feline=1)
    assert written["cluster"].tolist() == [0 if w == "dog" else 1 for w in frame["wnid"]]
    assert main([*args, "--level", "0", "--out", str(out)]) == 0
    assert pd.read_csv(out)["cluster"].nunique() == 1


def test_kmeans_from_features(table, tmp_path) -> None:
    path, frame = table
    features = np.where(frame["round"].to_numpy()[:, None], 5.0, -5.0) + np.random.default_rng(1).normal(
        size=(120, 3)
    )
    np.save(tmp_path / "f.npy", features)
    out = tmp_path / "k.csv"
    args = [
        "clusters",
        "--table",
        str(path),
        "--features",
        str(tmp_path / "f.npy"),
        "--k",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    clusters = pd.read_csv(out)["cluster"].to_numpy()
    assert (clusters == clusters[0]).tolist() == (frame["round"] == frame["round"][0]).tolist()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attributes", "nope", "--top-k", "1"], "unknown column(s) ['nope']"),
        (
            ["--attributes", "round", "--top-k", "5"],
            "top_k (--top-k, clusters.top_k) is 5, but the columns ['round'] of ",
        ),
        (["--hierarchy", "wordnet", "--level", "2"], "hierarchy clusters need the class of each row"),
        (["--features", "missing.npy", "--k", "2"], "missing.npy"),
        ([], "choose one source"),
        (["--attributes", "round", "--features", "f.npy"], "(got attributes and kmeans)"),
        (["--source", "file"], "--source=file needs --file"),
        (["--source", "labels"], "labels clusters need the class of each row"),
        (["--features", "f.npy", "--seed", "-1"], "--seed must be in 0..2^31-1"),
    ],
)
def test_user_errors_exit_2_with_one_line(table, tmp_path, capsys, extra, message) -> None:
    path, _ = table
    out = tmp_path / "never.csv"
    assert main(["clusters", "--table", str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_missing_or_malformed_table(tmp_path, capsys) -> None:
    assert (
        main(["stats", "--table", str(tmp_path / "none.csv"), "--cluster-col", "a", "--label-col", "b"]) == 2
    )
    assert "none.csv: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'a,b\n1,"unterminated\n')
    assert main(["stats", "--table", str(bad), "--cluster-col", "a", "--label-col", "b"]) == 2
    assert "bad.csv: cannot read the table" in capsys.readouterr().err


def test_argument_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["clusters", "--table", "t.csv", "--out", "o.csv", "--top-k", "zero"])
    assert exit_info.value.code == 2
    assert "expected an integer" in capsys.readouterr().err


@pytest.fixture
def small(tmp_path):
    """Six rows by hand: color (two values, one attribute color=blue, p = 1/2) is the label; shiny (p = 1/2)
    crosses it; flat is constant."""
    frame = pd.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(6)],
            "label": ["x", "x", "y", "y", "x", "y"],
            "color": ["red", "red", "blue", "blue", "red", "blue"],
            "shiny": [True, False, True, False, False, True],
            "flat": [False] * 6,
        }
    )
    path = tmp_path / "small.csv"
    frame.to_csv(path, index=False)
    return path


def _clusters(path, tmp_path, *extra):
    out = tmp_path / "c.csv"
    assert main(["clusters", "--table", str(path), *extra, "--out", str(out)]) == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_attributes_equal_to_the_labels_are_warned_about(small, tmp_path, capsys) -> None:
    # color=blue and shiny tie at 1 bit: column order puts color=blue first, and top-1 is the label
    out, meta = _clusters(
        small, tmp_path, "--attributes", "color,shiny", "--top-k", "1", "--label-col", "label"
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        f"6 rows -> 2 clusters; wrote {out} and {out.with_suffix('.json')}",
        "attributes (by entropy): color=blue",
        "warning: the clusters are the labels themselves (the same partition as the label column): "
        "Cl-InfoNCE is then SupCon, supervised contrastive learning",
        "n=6  clusters=2  labels=2",
    ]
    assert not any(line.startswith("note:") for line in lines)  # the warning is not repeated as a note
    assert meta["keys"] == ["color=red", "color=blue"]
    assert pd.read_csv(out)["cluster"].tolist() == [0, 0, 1, 1, 0, 1]


def test_two_attributes_readable_keys_and_no_warning(small, tmp_path, capsys) -> None:
    out, meta = _clusters(
        small, tmp_path, "--attributes", "color,shiny", "--top-k", "2", "--label-col", "label"
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == ["attributes (by entropy): color=blue, shiny", "n=6  clusters=4  labels=2"]
    assert not any(line.startswith("warning:") for line in lines)
    # (blue, shiny) per row: 00 is red and dull, ... ids in pattern order 00, 01, 10, 11
    assert meta["keys"] == [
        "color=red & not shiny",
        "color=red & shiny",
        "color=blue & not shiny",
        "color=blue & shiny",
    ]
    assert pd.read_csv(out)["cluster"].tolist() == [1, 0, 3, 2, 0, 3]


def test_one_cluster_is_warned_about_without_labels(small, tmp_path, capsys) -> None:
    out, meta = _clusters(small, tmp_path, "--attributes", "flat", "--top-k", "1")
    assert capsys.readouterr().out.splitlines() == [
        f"6 rows -> 1 clusters; wrote {out} and {out.with_suffix('.json')}",
        "attributes (by entropy): flat",
        "warning: one cluster holds every sample: Cl-InfoNCE then pulls every image together and teaches "
        "nothing; use more attributes or a deeper level",
    ]
    assert meta["keys"] == ["not flat"]


def test_one_hierarchy_cluster_is_warned_about_once(table, tmp_path, capsys) -> None:
    path, _ = table
    edges = tmp_path / "parents.csv"
    pd.DataFrame({"child": ["dog", "cat"], "parent": ["animal", "animal"]}).to_csv(edges, index=False)
    _, meta = _clusters(path, tmp_path, "--label-col", "wnid", "--hierarchy", str(edges), "--level", "0")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("warning: one cluster holds every sample")
    assert lines[2] == "n=120  clusters=1  labels=2"
    assert sum("one cluster" in line for line in lines) == 1 and not lines[1].startswith("attributes")
    assert meta["keys"] == ["animal"]
