"""`clinfonce clusters --out` writes the format its extension names, or refuses it before any work."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from clinfonce.cli import main


@pytest.fixture
def table(tmp_path):
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(12)], "label": [i % 3 for i in range(12)]})
    frame["round"] = frame["label"] == 0
    frame.to_csv(tmp_path / "meta.csv", index=False)
    return tmp_path / "meta.csv", frame


@pytest.mark.parametrize(
    ("suffix", "read"),
    [(".csv", pd.read_csv), (".tsv", lambda p: pd.read_csv(p, sep="\t")), (".parquet", pd.read_parquet)],
)
def test_the_extension_names_the_format(table, tmp_path, suffix, read, capsys) -> None:
    path, frame = table
    out = tmp_path / f"c{suffix}"
    argv = ["clusters", "--table", str(path), "--attributes", "round", "--top-k", "1", "--label-col", "label"]
    assert main([*argv, "--out", str(out)]) == 0
    written = read(out)  # the format's own reader, not ours
    assert written["cluster"].tolist() == frame["round"].map({False: 0, True: 1}).tolist()
    assert out.with_suffix(".json").is_file()
    capsys.readouterr()
    assert (
        main(["stats", "--table", str(out), "--cluster-col", "cluster", "--label-col", "label", "--json"])
        == 0
    )
    # read back in its format, the file holds the clusters: round is label 0, 4 of the 12 rows, a function of
    # the label, so I(Z;T) = H(Z) = h(1/3) bits and H(Z|T) = 0, by hand
    stats = json.loads(capsys.readouterr().out)
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    assert (stats["n"], stats["n_clusters"], stats["n_labels"]) == (12, 2, 3)
    assert (
        abs(stats["I_Z_T"] - h) < 1e-9 and abs(stats["H_Z"] - h) < 1e-9 and abs(stats["H_Z_given_T"]) < 1e-9
    )


@pytest.mark.parametrize("name", ["c.json", "c.xlsx", "clusters"])
def test_other_extensions_are_refused_and_nothing_is_written(table, tmp_path, name, capsys) -> None:
    path, _ = table
    out = tmp_path / "out" / name
    assert (
        main(["clusters", "--table", str(path), "--attributes", "round", "--top-k", "1", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "table; use .csv, .tsv or .parquet" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
