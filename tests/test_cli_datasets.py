"""Stage 1 and training on file-backed datasets through the CLI: WordNet clusters of an image folder, and
bad files stopping a run or being skipped and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinfonce.cli import main

WORDNET = Path("/usr/share/wordnet/data.noun")


def image_folder(root: Path, classes: list[str], per_class: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = np.clip(rng.normal(40 + 60 * i, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{j}.png")
    return root


@pytest.mark.skipif(not WORDNET.exists(), reason="WordNet not installed (apt-get install wordnet-base)")
def test_clusters_of_an_imagefolder_from_wordnet_levels(tmp_path) -> None:
    chihuahua, tabby, tench = "n02085620", "n02123045", "n01440764"
    root = image_folder(tmp_path / "images", [chihuahua, tabby, tench])
    out = tmp_path / "clusters.csv"
    args = ["clusters", "--dataset", "imagefolder", "--root", str(root), "--data-option", "image_size=8"]
    assert main([*args, "--hierarchy", "wordnet", "--level", "11", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert written.columns.tolist() == ["path", "label", "cluster"]
    assert sorted(written["path"])[0] == f"{tench}/0.png"  # relative to the root
    cluster_of = written.groupby("label")["cluster"].first()
    assert cluster_of[chihuahua] == cluster_of[tabby] != cluster_of[tench]  # carnivore vs bony fish
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["keys"] == ["n02075296 (carnivore)", "n02514825 (bony_fish)"]  # ids with their lemmas
    assert meta["provenance"]["level"] == 11


def test_training_stops_at_a_bad_file_or_skips_and_reports_it(tmp_path, capsys) -> None:
    root = image_folder(tmp_path / "images", ["a", "b"], per_class=40, size=16)
    (root / "b" / "zz_truncated.png").write_bytes((root / "b" / "0.png").read_bytes()[:60])
    common = [
        "data.name=imagefolder",
        f"data.options={{root: {root}, image_size: 16, test_fraction: 0.25}}",
        "clusters.source=labels",
        "optim.batch_size=16",
        "train.epochs=1",
        "train.progress_bar=false",
        "eval.probe_epochs=5",
        "eval.knn_k=[3]",
    ]
    assert main(["train", *common, f"train.out={tmp_path / 'stopped'}"]) == 2
    assert "b/zz_truncated.png" in capsys.readouterr().err
    assert not (tmp_path / "stopped").exists()  # nothing half-written
    run = tmp_path / "skipped"
    assert main(["train", "--skip-bad", *common, f"train.out={run}"]) == 0
    skipped = pd.read_csv(run / "skipped.csv")
    assert skipped["path"].tolist() == ["b/zz_truncated.png"]
    assert "skipped unreadable images: 1" in (run / "report.md").read_text()
