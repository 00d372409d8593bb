"""End to end on a tiny generated set: learning happens, checkpoints load safely, resume is exact."""

from __future__ import annotations

import copy
import json
import math
import pickle

import lightning as L
import pandas as pd
import pytest
import torch

from clinfonce.config import load_config
from clinfonce.data.registry import load_dataset
from clinfonce.encoder import Encoder
from clinfonce.errors import InputError
from clinfonce.evaluation.pipeline import evaluate_checkpoint, evaluate_encoder
from clinfonce.run import RunDir
from clinfonce.training.engine import train


def training_curve(run_dir):
    return RunDir(run_dir).training_curve()


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("shapes", {"n_train": 384, "n_test": 192, "seed": 1})


def tiny_config(run_dir, method="clinfonce", epochs=3, **train_options):
    return load_config(
        {
            "data": {"name": "shapes", "options": {"n_train": 384, "n_test": 192, "seed": 1}},
            "clusters": {"source": "attributes", "top_k": 3},
            "model": {
                "width": 16
            },  # not the default: evaluation must rebuild the encoder from the run's config
            "method": {"name": method},
            "optim": {"batch_size": 64, "lr": 0.2, "warmup_epochs": 0.5},
            "train": {
                "epochs": epochs,
                "out": str(run_dir),
                "progress_bar": False,
                "log_every_n_steps": 1,
                **train_options,
            },
            "eval": {"probe_epochs": 60, "knn_k": [5]},
        }
    )


class _FirstWeights(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.state = copy.deepcopy(module.encoder.state_dict())


def test_train_then_evaluate_learns(tmp_path, tiny) -> None:
    first = _FirstWeights()
    config = tiny_config(tmp_path / "run", method="supcon", epochs=4)
    run_dir = train(config, callbacks=[first], dataset=tiny).dir
    for name in (
        "config.yaml",
        "environment.json",
        "encoder.pt",
        "checkpoints/last.ckpt",
        "logs/metrics.csv",
    ):
        assert (run_dir / name).is_file(), name
    curve = training_curve(run_dir)
    assert len(curve) == 4 and curve["train_loss"].iloc[-1] < curve["train_loss"].iloc[0]
    metrics = evaluate_checkpoint(run_dir, dataset=tiny, device="cpu")
    assert (metrics["n_train"], metrics["n_test"]) == (384, 192)
    chance = 100 / 12
    assert metrics["linear_top1"] > 2.5 * chance, metrics  # clearly above chance after four short epochs
    # and above the same network before training, by the same evaluation: on these shapes the untrained CNN's
    # features already give a probe 26.6 / 26.6 / 28.6 % (train.seed 0 / 1 / 2, an AMD EPYC), the trained
    # 39.6 / 45.8 / 37.5 %. The run is seed 0 (a gap of 13 points, 25 of 192 test images): 5 points is 10
    # images, well clear of both another CPU's rounding and of a run that learnt nothing
    untrained = Encoder.load(run_dir)
    untrained.network.load_state_dict(first.state)
    before = evaluate_encoder(untrained, tiny, config.eval).metrics
    assert metrics["linear_top1"] >= before["linear_top1"] + 5, (metrics, before)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "report.md").is_file()


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, tiny):
    """A one-epoch Cl-InfoNCE run (float32), shared by the tests that only read it."""
    return train(tiny_config(tmp_path_factory.mktemp("one") / "run", epochs=1), dataset=tiny)


def test_clinfonce_run_records_cluster_provenance(one_epoch, tiny) -> None:
    from sklearn.metrics import mutual_info_score

    run_dir = one_epoch.dir
    meta = json.loads((run_dir / "clusters.json").read_text())
    assert meta["provenance"]["method"] == "attributes" and meta["provenance"]["k"] == 3
    # clusters.csv is the training rows grouped by their values on the 3 attributes the provenance names
    written = pd.read_csv(run_dir / "clusters.csv")
    assert sorted(written["row"]) == sorted(tiny.rows("train").tolist())
    table = tiny.table.iloc[written["row"]]
    chosen = meta["provenance"]["attributes"]
    patterns = table[chosen].astype(int).astype(str).agg("".join, axis=1).to_numpy()
    pairs = set(zip(written["cluster"], patterns, strict=True))
    assert len(pairs) == written["cluster"].nunique() == len(set(patterns)) == meta["n_clusters"]
    # cluster_stats.json, against scikit-learn's mutual information of those clusters and the labels
    stats = json.loads((run_dir / "cluster_stats.json").read_text())
    expected = mutual_info_score(table["label"], written["cluster"]) / math.log(2)
    assert (stats["n"], stats["n_clusters"], stats["n_labels"]) == (384, meta["n_clusters"], 12)
    assert abs(stats["I_Z_T"] - expected) < 1e-9, (stats["I_Z_T"], expected)
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["seed"] == 0 and "torch" in json.dumps(environment)


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.should_stop = True


def test_resume_matches_an_uninterrupted_run(tmp_path, tiny) -> None:
    straight = train(tiny_config(tmp_path / "straight", epochs=2), dataset=tiny).dir
    interrupted = train(
        tiny_config(tmp_path / "resumed", epochs=2), callbacks=[StopAfterFirstEpoch()], dataset=tiny
    ).dir
    first = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["epoch"] == 0
    # a row logged after the checkpoint, as a run killed mid-epoch leaves: it must not survive the resume
    log = interrupted / "logs" / "metrics.csv"
    stale = pd.read_csv(log).iloc[[-1]].assign(step=first["global_step"] + 1, epoch=1)
    pd.concat([pd.read_csv(log), stale]).to_csv(log, index=False)
    train(tiny_config(tmp_path / "resumed", epochs=2, resume="auto"), dataset=tiny)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * (384 // 64)
    state_a, state_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key]["momentum_buffer"], state_b[key]["momentum_buffer"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], msg=key)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    # the training curve keeps the epoch logged before the interruption, and only the rows that happened
    pd.testing.assert_frame_equal(training_curve(interrupted), training_curve(straight), rtol=1e-4)
    assert (
        pd.read_csv(log)["step"].tolist() == pd.read_csv(straight / "logs" / "metrics.csv")["step"].tolist()
    )


def test_resume_from_a_file_that_is_not_a_training_checkpoint(tmp_path, tiny) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.ckpt: not a loadable"):
        train(tiny_config(tmp_path / "run", resume=str(junk)), dataset=tiny)
    encoder_only = tmp_path / "encoder.pt"
    torch.save({"format": "clinfonce-encoder-v2", "state_dict": {}}, encoder_only)
    with pytest.raises(InputError, match="not a training checkpoint"):
        train(tiny_config(tmp_path / "run", resume=str(encoder_only)), dataset=tiny)
    assert not (tmp_path / "run").exists()


def test_bf16_mixed_precision_trains_on_cpu(tmp_path, tiny, one_epoch) -> None:
    run_dir = train(tiny_config(tmp_path / "run", epochs=1, precision="bf16-mixed"), dataset=tiny).dir
    curve = training_curve(run_dir)
    assert len(curve) == 1 and torch.isfinite(torch.tensor(curve["train_loss"].to_numpy())).all()
    saved = torch.load(run_dir / "encoder.pt", weights_only=True)["state_dict"]
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}  # master weights
    # the same epoch in float32 (same seed, same batches): bf16 rounding moves the mean loss by 0.19 % / 0.03 %
    # (train.seed 0 / 1, an AMD EPYC); 2 % allows for that rounding on any CPU, not a wrong loss
    loss, reference = curve["train_loss"].iloc[0], one_epoch.training.epoch_loss[0]
    assert abs(loss - reference) < 0.02 * reference, (loss, reference)


def test_step_checkpoints_beside_epoch_checkpoints(tmp_path, tiny) -> None:
    run_dir = train(tiny_config(tmp_path / "run", epochs=1, checkpoint_every_n_steps=2), dataset=tiny).dir
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    steps_per_epoch = 384 // 64
    expected_steps = [f"step{step:08d}.ckpt" for step in range(2, steps_per_epoch + 1, 2)]
    assert names == sorted(["epoch0000.ckpt", "last.ckpt", *expected_steps])
    saved = torch.load(run_dir / "checkpoints" / expected_steps[0], weights_only=True)
    assert saved["global_step"] == 2


def test_refuses_to_overwrite_a_run(one_epoch, tiny) -> None:
    before = {p: p.read_bytes() for p in one_epoch.dir.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="already holds a run"):
        train(tiny_config(one_epoch.dir, epochs=1), dataset=tiny)
    assert {p: p.read_bytes() for p in one_epoch.dir.rglob("*") if p.is_file()} == before


def test_checkpoints_cannot_run_code(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    with pytest.raises(InputError, match="not a loadable clinfonce checkpoint"):
        Encoder.load(evil)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pt"):
        Encoder.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a clinfonce checkpoint"):
        Encoder.load(other)
    with pytest.raises(InputError, match=r"no encoder\.pt or checkpoints"):
        Encoder.load(tmp_path)
