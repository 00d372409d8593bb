"""`clinfonce compare`: the plan, the results table and report, re-use, resume, failures, the flags form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from clinfonce.cli import main
from clinfonce.compare import RESULT_COLUMNS, load_spec, plan, run_compare
from clinfonce.errors import InputError
from clinfonce.run import RunDir
from clinfonce.training.engine import train
from tiny_runs import TINY_SHAPES

TINY = {
    **{key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in TINY_SHAPES)},
    "data.options.n_train": 128,  # half of TINY_SHAPES' training images: a comparison trains many runs
    "train.epochs": 2,
    "eval.probe_epochs": 5,
    "eval.knn_k": [5],
}
CHANCE = 100 / 12  # the shapes data: 12 classes


def _spec(out, **fields):
    return load_spec({"config": "shapes", "overrides": dict(TINY), "out": str(out), **fields})


def test_plan_runs_stage1_methods_per_setting_and_the_others_once(tmp_path) -> None:
    spec = _spec(
        tmp_path,
        methods=["simclr", "clinfonce", "attr_bce"],
        seeds=[3, 4],
        settings={"two": {"top_k": 2}},
        sweep={"top_k": [1, 4]},
    )
    runs = plan(spec)
    names = [run.name for run in runs]
    assert names[:4] == [
        "simclr-seed3",
        "clinfonce-two-seed3",
        "clinfonce-top_k=1-seed3",
        "clinfonce-top_k=4-seed3",
    ]
    assert len(runs) == 2 * (1 + 3 + 3) and len(set(names)) == len(names)
    by_name = {run.name: run for run in runs}
    assert by_name["attr_bce-top_k=4-seed4"].config.clusters.top_k == 4
    assert by_name["attr_bce-top_k=4-seed4"].config.train.seed == 4
    assert by_name["clinfonce-two-seed3"].config.clusters.top_k == 2
    assert by_name["clinfonce-top_k=1-seed3"].sweep_value == 1
    assert by_name["simclr-seed4"].config.method.name == "simclr"
    assert by_name["simclr-seed4"].config.clusters.source == "none"  # it trains on no clusters
    assert all(run.config.train.out == str((tmp_path / "runs" / run.name).absolute()) for run in runs)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"methods": ["simclr", "moco"]}, "methods must be among"),
        ({"sweep": {"topk": [1, 2]}}, "sweep key 'topk' is not a clusters key"),
        ({"sweep": {"top_k": 3}}, "non-empty list"),
        ({"overrides": {"train": {"epochs": 2}}}, "dotted keys"),
        ({"seeds": []}, "seeds must not be empty"),
    ],
)
def test_a_wrong_compare_file_is_one_clear_error(tmp_path, fields, message) -> None:
    with pytest.raises(InputError, match=message):
        _spec(tmp_path, **fields)


def test_a_setting_that_cannot_resolve_stops_before_training(tmp_path) -> None:
    spec = _spec(tmp_path, methods=["attr_bce"], settings={"tree": {"source": "hierarchy"}})
    with pytest.raises(InputError, match=r"attr_bce with setting 'tree'.*clusters\.source=attributes"):
        run_compare(spec, say=lambda line: None)
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    spec = _spec(out, methods=["simclr", "clinfonce"], seeds=[0, 1], sweep={"top_k": [1, 3, 40]})
    lines: list[str] = []
    table = run_compare(spec, say=lines.append)
    return out, spec, table, lines


def test_results_report_and_plots(compared) -> None:
    out, _, _, lines = compared
    written = pd.read_csv(out / "results.csv")
    assert list(written.columns) == [*RESULT_COLUMNS[:2], "top_k", *RESULT_COLUMNS[2:]]
    assert len(written) == 2 * (1 + 3) and len(lines) == len(written)
    ok = written[written["status"] == "ok"]
    for _, row in ok.iterrows():  # every number is the run's own evaluation and clustering
        run = RunDir(out / row["run"])
        metrics = run.metrics()
        assert (metrics["n_train"], metrics["n_test"]) == (128, 64)  # every image of the setting, once
        # kNN on the features is well above chance (8.3 %): measured 26.6-32.8 % over these six runs (an AMD
        # EPYC), 2 x chance is 16.7 %, six test images below the lowest. (The 5-epoch probe is too short to
        # pin: it measured 7.8-23.4 %.)
        assert metrics["knn5_top1"] > 2 * CHANCE, (row["run"], metrics)
        assert row["top1"] == round(metrics["linear_top1"], 2)  # the table rounds to 2 places
        assert row["train_seconds"] == run.training().train_seconds > 0
        stats = run.cluster_stats()
        if row["method"] == "clinfonce":
            assert row["I_Z_T"] == pytest.approx(stats.I_Z_T, abs=1e-4)
            assert row["n_clusters"] == stats.n_clusters
            assert run.config().clusters.top_k == row["top_k"]
        else:
            assert stats is None and pd.isna(row["I_Z_T"])
    # top_k=40 is more than the shapes data's attributes: those runs failed, reported, the rest ran
    failed = written[written["status"] == "failed"]
    assert set(failed["top_k"]) == {40} and len(failed) == 2
    assert failed["error"].str.contains("top_k").all()
    assert (out / "failures" / "clinfonce-top_k=40-seed0.txt").is_file()
    report = (out / "report.md").read_text()
    for name in ("accuracy.png", "sweep.png"):
        assert (out / name).stat().st_size > 0 and f"]({name})" in report
    # the summary is mean ± std over seeds of the rows above
    first = ok[(ok["method"] == "clinfonce") & (ok["top_k"] == 3)]["top1"]
    assert f"{first.mean():.2f} ± {first.std():.2f}" in report
    assert "## Failed runs" in report and "FAILED" in lines[-1]


def test_finished_runs_are_reused(compared) -> None:
    out, spec, table, _ = compared
    encoder = out / "runs" / "clinfonce-top_k=3-seed1" / "encoder.pt"
    before = encoder.stat().st_mtime_ns
    again = run_compare(spec, say=lambda line: None)
    assert again.loc[again["status"] == "ok", "reused"].all()
    assert encoder.stat().st_mtime_ns == before
    pd.testing.assert_series_equal(again["top1"], table["top1"])
    pd.testing.assert_series_equal(again["train_seconds"], table["train_seconds"])  # the runs' own record
    assert (again.loc[again["status"] == "failed", "reused"] == False).all()  # noqa: E712 -- retried


def test_another_setting_in_a_used_folder_is_refused_before_training(compared) -> None:
    out, spec, _, _ = compared
    changed = load_spec({**spec.to_dict(), "overrides": {**spec.overrides, "train.epochs": 3}})
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/encoder.pt")}
    with pytest.raises(InputError, match=r"made with other train\.epochs.*--overwrite"):
        run_compare(changed, say=lambda line: None)
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/encoder.pt")}


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path) -> None:
    import lightning as L

    class Stop(L.Callback):
        def on_train_epoch_end(self, trainer, module) -> None:
            trainer.should_stop = True

    spec = _spec(tmp_path, methods=["clinfonce"], seeds=[0])
    (run,) = plan(spec)
    train(run.config, callbacks=[Stop()])  # as if the comparison had been stopped after one epoch
    folder = RunDir(run.config.train.out)
    assert len(folder.training().epoch_loss) == 1 and folder.metrics() is None
    first_loss = folder.training().epoch_loss[0]
    first_seconds = folder.training().train_seconds
    (row,) = run_compare(spec, say=lambda line: None).to_dict("records")
    assert row["status"] == "ok" and not row["reused"]
    losses = folder.training().epoch_loss
    assert list(losses) == [0, 1] and losses[0] == first_loss  # epoch 0 kept, epoch 1 added
    assert row["train_seconds"] == folder.training().train_seconds > first_seconds  # time of both parts
    assert (folder.metrics()["n_train"], folder.metrics()["n_test"]) == (128, 64)  # evaluated once finished


def _image_tree(root, n_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "grey": (120, 120, 120)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_the_flags_form_with_a_test_folder_and_a_clusters_file(tmp_path, capsys) -> None:
    _image_tree(tmp_path / "train", 12, 0)
    _image_tree(tmp_path / "test", 4, 1)
    warm = {"red": "warm", "green": "cold", "blue": "cold", "grey": "warm"}
    paths = sorted(p.relative_to(tmp_path / "train").as_posix() for p in (tmp_path / "train").rglob("*.png"))
    clusters = pd.DataFrame({"path": paths, "cluster": [warm[p.split("/")[0]] for p in paths]})
    clusters.sample(frac=1, random_state=0).to_csv(tmp_path / "clusters.csv", index=False)  # matched by path
    args = [
        "compare", "--dataset", "imagefolder", "--root", str(tmp_path / "train"),
        "--test-root", str(tmp_path / "test"), "--clusters", str(tmp_path / "clusters.csv"),
        "--methods", "simclr,clinfonce,supcon", "--seeds", "0,1", "--epochs", "1", "--backbone", "small",
        "--image-size", "16", "--out", str(tmp_path / "out"),
        "model.width=8", "optim.batch_size=16", "eval.probe_epochs=5", "eval.knn_k=[5]", "eval.val_fraction=0.2",
    ]  # fmt: skip
    assert main(args) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (results["status"] == "ok").all() and len(results) == 6
    assert set(results.loc[results["method"] == "clinfonce", "setting"]) == {"file"}
    run = RunDir(tmp_path / "out" / results.loc[results["method"] == "clinfonce", "run"].iloc[0])
    config = run.config()
    assert (
        config.data.options["test_root"] == str(tmp_path / "test") and config.data.options["image_size"] == 16
    )
    assert config.train.epochs == 1 and config.model.backbone == "small"
    written = pd.read_csv(run.clusters_path)
    assert len(written) == 48
    for path, cluster in zip(written["path"], written["cluster"], strict=True):
        assert run.clusters().keys[cluster] == warm[path.split("/")[0]]
    assert run.metrics()["n_test"] == 16  # the test folder's images
    assert "wrote" in capsys.readouterr().out
    # the same command again: nothing trains
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").glob("*/encoder.pt")}
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").glob("*/encoder.pt")}
    assert pd.read_csv(tmp_path / "out" / "results.csv")["reused"].all()


def test_folders_of_links_to_a_third_folder_cluster_and_train(tmp_path, capsys) -> None:
    """Train and test folders cut from one pool of images by symbolic links (no copies), as torchvision's
    ImageFolder reads them: stage 1 and a comparison run on them, every linked image trained or tested."""
    _image_tree(tmp_path / "pool", 16, 0)
    for split, numbers in (("train", range(12)), ("test", range(12, 16))):
        for image in sorted((tmp_path / "pool").glob("*/*.png")):
            if int(image.stem) in numbers:
                link = tmp_path / split / image.parent.name / image.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(image)
    clusters = tmp_path / "clusters.csv"
    assert main(["clusters", "--dataset", "imagefolder", "--root", str(tmp_path / "train"),
                 "--source", "labels", "--out", str(clusters)]) == 0  # fmt: skip
    assert len(pd.read_csv(clusters)) == 48
    args = [
        "compare", "--dataset", "imagefolder", "--root", str(tmp_path / "train"),
        "--test-root", str(tmp_path / "test"), "--methods", "supcon", "--seeds", "0", "--epochs", "2",
        "--backbone", "small", "--image-size", "16", "--out", str(tmp_path / "out"),
        "model.width=8", "optim.batch_size=16", "eval.probe_epochs=20", "eval.knn_k=[5]",
    ]  # fmt: skip
    assert main(args) == 0
    row = pd.read_csv(tmp_path / "out" / "results.csv").iloc[0]
    metrics = RunDir(tmp_path / "out" / row["run"]).metrics()
    assert row["status"] == "ok" and (metrics["n_train"], metrics["n_test"]) == (48, 16)
    assert row["top1"] >= 75  # four colour classes: chance is 25 %
    # the same pool image linked into both folders is one image in two splits: refused
    (tmp_path / "test" / "red" / "again.png").symlink_to(tmp_path / "pool" / "red" / "0.png")
    assert main(["clusters", "--dataset", "imagefolder", "--root", str(tmp_path / "train"), "--data-option",
                 f"test_root={tmp_path / 'test'}", "--source", "labels", "--out", str(clusters)]) == 2  # fmt: skip
    assert "same image file, in two splits" in capsys.readouterr().err


def test_a_failed_run_gives_exit_status_1(tmp_path, capsys) -> None:
    args = ["compare", "--base", "shapes", "--methods", "clinfonce", "--seeds", "0", "--sweep", "top_k=50",
            "--out", str(tmp_path), *(f"{k}={v}" for k, v in TINY.items())]  # fmt: skip
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "1 run(s) FAILED" in captured.out and "Traceback" not in captured.err


STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))


@pytest.mark.parametrize("study", STUDIES, ids=[path.stem for path in STUDIES])
def test_committed_study_files_plan(study: Path) -> None:
    """Every study in ``studies/`` (the commands docs/results.md cites) still resolves: each run's config
    is checked without opening the data."""
    runs = plan(load_spec(study))
    spec = yaml.safe_load(study.read_text())
    assert {run.method for run in runs} == set(spec["methods"])
    assert {run.config.train.seed for run in runs} == set(spec["seeds"])
