"""`clinfonce clusters --out` writes the format its extension names, or refuses it before any work."""

from __future__ import annotations

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
