"""The train / eval / embed / data check / demo commands, end to end on tiny data."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from clinfonce.cli import main
from clinfonce.demo import DemoSettings, ordering_holds, run_demo
from tiny_runs import TINY_SHAPES

TINY = [*TINY_SHAPES, "train.epochs=1", "eval.probe_epochs=20", "eval.knn_k=[5]"]
CHANCE = 100 / 12  # the shapes data: 12 classes, balanced


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, f"train.out={run_dir}"]) == 0
    return run_dir


def test_train_writes_a_complete_run(trained_run) -> None:
    for name in (
        "config.yaml",
        "environment.json",
        "clusters.csv",
        "clusters.json",
        "encoder.pt",
        "metrics.json",
        "report.md",
    ):
        assert (trained_run / name).exists(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_test"]) == (256, 64)  # every image of TINY_SHAPES, each split once
    # one epoch learns the shapes well above chance (8.3 %): measured linear 23.4 / 25.0 / 31.2 % and kNN
    # 37.5 / 35.9 / 26.6 % for train.seed 0 / 1 / 2 (an AMD EPYC). 2 x chance is 16.7 %, 5 test images fewer
    # than the lowest of them: far more than other CPUs' rounding moves, far less than a broken pipeline loses
    assert metrics["linear_top1"] > 2 * CHANCE and metrics["knn5_top1"] > 2 * CHANCE, metrics
    # the pictures, shown by the report, and a self-contained HTML twin with every image inside it
    report = (trained_run / "report.md").read_text()
    for name in ("curve.png", "per_class.png", "confusion.png", "embedding_map.png", "clusters.png"):
        with Image.open(trained_run / name) as picture:
            assert picture.format == "PNG" and picture.size[0] > 200, name
        assert f"]({name})" in report, name
    page = (trained_run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5 and 'src="' not in page.replace('src="data:', "")
    assert "<table>" in page and f"{metrics['linear_top1']:.2f}" in page
    report = (trained_run / "report.md").read_text()
    # the report shows the measured value
    assert re.search(rf"\| linear_top1 +\| +{metrics['linear_top1']:.2f} \|", report), report


def test_eval_from_a_lightning_checkpoint_matches_the_run(trained_run, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    assert (
        main(["eval", "--checkpoint", str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    )
    again = json.loads((out / "metrics.json").read_text())
    first = json.loads((trained_run / "metrics.json").read_text())
    assert again["linear_top1"] == pytest.approx(first["linear_top1"])  # same weights, same protocol
    assert "linear_top1" in capsys.readouterr().out


def test_resume_flag_continues_a_run(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", *TINY, f"train.out={run_dir}", "--no-eval"]) == 0
    assert main(["train", *TINY, "train.epochs=2", f"train.out={run_dir}", "--no-eval"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", *TINY, "train.epochs=2", f"train.out={run_dir}", "--no-eval", "--resume"]) == 0
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * (256 // 32)
    missing = tmp_path / "no such.ckpt"
    assert main(["train", *TINY, f"train.out={tmp_path / 'other'}", "--resume", str(missing)]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_embed_rows_match_the_index(trained_run, tmp_path) -> None:
    out = tmp_path / "emb"
    assert main(["embed", "--checkpoint", str(trained_run), "--out", str(out), "--split", "test"]) == 0
    embeddings = np.load(out / "embeddings.npy")
    index = pd.read_csv(out / "index.csv")
    assert embeddings.shape == (64, 64) and len(index) == 64  # the small CNN of width 8: 8 x 8 features
    assert (index["split"] == "test").all() and index["row"].tolist() == list(range(256, 320))
    assert main(["embed", "--checkpoint", str(trained_run), "--out", str(out / "p"), "--projection"]) == 0
    assert np.load(out / "p" / "embeddings.npy").shape == (320, 16)  # model.head_dim=16


def test_embed_parquet_and_index_and_neighbours(trained_run, tmp_path, capsys) -> None:
    from clinfonce.data.synthetic import shapes_dataset

    out = tmp_path / "emb"
    assert main(["embed", "--checkpoint", str(trained_run), "--out", str(out / "npy")]) == 0
    assert (
        main(["embed", "--checkpoint", str(trained_run), "--out", str(out), "--format", "parquet", "--index"])
        == 0
    )
    frame = pd.read_parquet(out / "embeddings.parquet")
    vectors = np.stack(frame["embedding"].to_numpy())
    np.testing.assert_array_equal(
        vectors, np.load(out / "npy" / "embeddings.npy")
    )  # one embedding, two formats
    # the cluster column is the run's stage-1 cluster of each training image, empty for the others
    clusters = pd.read_csv(trained_run / "clusters.csv")
    by_row = dict(zip(clusters["row"], clusters["cluster"], strict=True))
    expected = [by_row.get(row) for row in frame["row"]]
    assert [None if pd.isna(c) else int(c) for c in frame["cluster"]] == expected
    # a search equals a brute-force cosine ranking
    from clinfonce.retrieval import open_index

    index = open_index(out)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores, positions = index.search(vectors[[5, 300]], 4)
    for query, row in zip((5, 300), positions, strict=True):
        np.testing.assert_array_equal(row, np.argsort(-(unit @ unit[query]), kind="stable")[:4])
    assert scores[:, 0] == pytest.approx(1.0, abs=1e-5)
    # neighbours of an image file: its own row comes first
    data = shapes_dataset(n_train=256, n_test=64, seed=4)  # the data TINY_SHAPES describes, made apart
    query = tmp_path / "query.png"
    Image.fromarray(data.loader(300).permute(1, 2, 0).numpy()).save(query)
    capsys.readouterr()
    picture = tmp_path / "nb.png"
    assert (
        main(["neighbours", "--index", str(out), "--image", str(query), "-k", "5", "--out", str(picture)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["rank", "similarity", "row", "class_name"] and len(lines) == 1 + 5 + 1
    rank, similarity, row, name = lines[1].split()[:4]
    assert (rank, row, name) == ("1", "300", data.class_names[int(data.table["label"][300])])
    assert float(similarity) == pytest.approx(1.0, abs=1e-4)  # the PNG is lossless: the same embedding
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG"
    assert main(["neighbours", "--index", str(tmp_path), "--image", str(query)]) == 2
    assert "not an index folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "optim.lrr=1"], "unknown key 'optim.lrr'"),
        (["train", "--config", "missing.yaml"], "no such config file"),
        (["train", "data.name=nope"], "unknown dataset 'nope'"),
        (["eval", "--checkpoint", "missing.ckpt"], "no such checkpoint file"),
        (
            ["data", "check", "--dataset", "imagefolder", "--root", "/nonexistent/images"],
            "/nonexistent/images",
        ),
    ],
)
def test_user_errors_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_data_check_lists_bad_files_and_exits_1(tmp_path, capsys) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["data", "check", "--dataset", "imagefolder", "--root", str(tmp_path), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 6 and summary["classes"] == 2
    assert [bad["path"] for bad in summary["bad_files"]] == ["dog/broken.png"]
    (tmp_path / "dog" / "broken.png").unlink()
    assert main(["data", "check", "--dataset", "imagefolder", "--root", str(tmp_path)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_demo_writes_results_report_and_plot(tmp_path) -> None:
    from sklearn.metrics import mutual_info_score

    from clinfonce.data.synthetic import ATTRIBUTE_COLUMNS, COLORS, shapes_dataset
    from clinfonce.run import RunDir

    settings = DemoSettings(n_train=256, n_test=128, epochs=1, batch_size=64, probe_epochs=10)
    results = run_demo(tmp_path, seeds=(0,), settings=settings, log=lambda *_: None)
    assert results["method"].tolist() == ["simclr", "clinfonce", "supcon"]
    written = pd.read_csv(tmp_path / "results.csv")
    assert (
        written["method"].tolist() == ["simclr", "clinfonce", "supcon"] and (written["status"] == "ok").all()
    )
    for _, row in written.iterrows():  # each run trained on and tested with exactly the demo's images
        run = RunDir(tmp_path / row["run"])
        assert (run.metrics()["n_train"], run.metrics()["n_test"]) == (256, 128), row["run"]
        assert row["top1"] == round(run.metrics()["linear_top1"], 2)
    assert RunDir(tmp_path / written["run"][1]).config().clusters.top_k == settings.top_k
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# clinfonce demo") and "## Stage 1" in report
    for name in ("accuracy.png", "curves.png"):
        with Image.open(tmp_path / name) as plot:
            assert plot.format == "PNG" and plot.size[0] > 300
        assert f"]({name})" in report
    # the stage-1 table, recomputed by brute force: the k binary attributes (the 0/1 columns, and color=<value>
    # for each colour) of highest entropy on the training images, the rows grouped by their values on them,
    # I(Z;T) in bits
    sweep = pd.read_csv(tmp_path / "stage1_sweep.csv")
    table = shapes_dataset(n_train=256, n_test=128, seed=0).table  # the demo's data (seed 0), made apart
    table = table[table["split"] == "train"]
    binary = table[[c for c in ATTRIBUTE_COLUMNS if c != "color"]].astype(bool)
    for colour in COLORS:
        binary[f"color={colour}"] = table["color"] == colour
    rate = binary.mean()
    entropy = -(rate * np.log2(rate) + (1 - rate) * np.log2(1 - rate))
    assert sweep["k"].tolist() == [1, 2, 3, 4, 5, 6]
    for _, row in sweep.iterrows():
        chosen = row["attributes"].split(", ")
        assert sorted(entropy[chosen]) == sorted(entropy.nlargest(row["k"])), row["attributes"]
        groups = binary[chosen].astype(int).astype(str).agg("".join, axis=1)
        assert row["clusters"] == groups.nunique()
        assert abs(row["I_Z_T"] - mutual_info_score(table["label"], groups) / np.log(2)) <= 5e-4 + 1e-9


def test_ordering_check() -> None:
    table = pd.DataFrame(
        {
            "method": ["simclr", "clinfonce", "supcon"] * 2,
            "seed": [0, 0, 0, 1, 1, 1],
            "top1": [50, 60, 70, 50, 45, 70],
        }
    )
    assert ordering_holds(table).tolist() == [True, False]


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the bundled config is found from any directory
    argv = [
        "train",
        "--config",
        "shapes",
        "optim.lr=1e-3",
        "clusters.attributes=round,hollow",
        "--print-config",
    ]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.001 and printed["clusters"]["attributes"] == ["round", "hollow"]
    assert printed["data"]["options"]["n_train"] == 4000  # from the bundled shapes config
    assert printed["data"]["options"]["image_size"] == 32  # the dataset's default, filled in
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "resume"),
    [
        (["--config", "shapes", "train.epochs=2", "--no-eval", "train.seed=1"], None),
        (["train.epochs=2", "--config", "shapes", "--resume", "train.seed=1"], "auto"),
        (["--config", "shapes", "--resume", "train.epochs=2", "train.seed=1"], "auto"),
        (
            ["--config", "shapes", "--resume", "runs/x/last.ckpt", "train.epochs=2", "train.seed=1"],
            "runs/x/last.ckpt",
        ),
        (["train.seed=7", "--config", "shapes", "--resume", "train.seed=1", "train.epochs=2"], "auto"),
        (["--config", "shapes", "--resume", "train.epochs=5", "train.seed=1", "train.epochs=2"], "auto"),
    ],
    ids=[
        "overrides around an option",
        "before and after",
        "after a bare --resume",
        "after --resume FILE",
        "the later of two wins",
        "the one --resume took comes first",
    ],
)
def test_overrides_may_stand_anywhere_among_the_options(capsys, argv, resume) -> None:
    """As a SLURM script writes them: `srun clinfonce train --config c --resume a=1 b=2`."""
    assert main(["train", *argv, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["train"]["epochs"], printed["train"]["seed"], printed["train"]["resume"]) == (
        2,
        1,
        resume,
    )


def test_data_options_lists_types_and_defaults(capsys) -> None:
    assert main(["data", "options", "table"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ")}
    assert "(required)" in lines["table"] and "str" in lines["table"]
    assert '"auto"' in lines["label_col"]
    assert "skip_bad" not in lines  # a run setting (--skip-bad, data.skip_bad), not a dataset option


def test_dataset_option_typos_are_caught_before_any_file_is_read(capsys) -> None:
    argv = [
        "data",
        "check",
        "--dataset",
        "imagefolder",
        "--root",
        "/nonexistent",
        "--data-option",
        "imagesize=8",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "did you mean 'data.options.image_size'" in err and "nonexistent" not in err


def test_eval_of_another_checkpoint_never_overwrites_the_runs_report(trained_run, tmp_path, capsys) -> None:
    metrics = (trained_run / "metrics.json").read_bytes()
    epoch = trained_run / "checkpoints" / "last.ckpt"
    assert main(["eval", "--checkpoint", str(epoch)]) == 2
    assert "not the run's final encoder" in capsys.readouterr().err
    assert (
        main(["eval", "--checkpoint", str(trained_run), "--dataset", "shapes", "--data-option", "seed=5"])
        == 2
    )
    assert "say where the report goes (--out)" in capsys.readouterr().err
    assert (trained_run / "metrics.json").read_bytes() == metrics
    out = tmp_path / "epoch"
    assert main(["eval", "--checkpoint", str(epoch), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert f"- evaluated: `{epoch}` on dataset `shapes`" in report


def test_a_split_smaller_than_one_batch_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    """The mistake is found before stage 1 writes its files, so the same command with a smaller batch
    runs without --overwrite."""
    out = tmp_path / "run"
    argv = ["train", "--config", "shapes", *TINY_SHAPES, "train.epochs=1", f"train.out={out}"]
    assert main([*argv, "optim.batch_size=512"]) == 2
    assert "fewer than one global batch (optim.batch_size=512" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert main([*argv, "eval.enabled=false"]) == 0
