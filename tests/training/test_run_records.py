"""A run's typed records: training hands the run on (evaluation reads back nothing training wrote), the
record in memory is what reading the directory gives, the encoder records how the dataset's loader decoded
images, a dataset handed to training must be the one the config describes, and the start is decided once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clinfonce
from clinfonce.config import load_config
from clinfonce.data.dataset import ImageInput
from clinfonce.data.registry import load_dataset
from clinfonce.data.synthetic import shapes_dataset
from clinfonce.encoder import Encoder
from clinfonce.errors import InputError
from clinfonce.records import CheckpointMeta, TrainingSummary
from clinfonce.run import Run, RunDir
from clinfonce.training import engine
from tiny_runs import TINY_SHAPES

TINY = [*TINY_SHAPES, "train.epochs=1", "eval.probe_epochs=5", "eval.knn_k=[5]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("records") / "run"
    return clinfonce.train("shapes", [*TINY, f"train.out={out}"])


def test_evaluation_after_training_reads_back_nothing_training_wrote(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a file of the run was read back")

    for name in ("config", "clusters", "cluster_stats", "training", "skipped", "trained_clusters", "metrics"):
        monkeypatch.setattr(RunDir, name, refuse)
    monkeypatch.setattr(Encoder, "load", refuse)
    monkeypatch.setattr(Run, "read", refuse)
    run = clinfonce.train("shapes", [*TINY, f"train.out={tmp_path / 'run'}"])
    assert (run.metrics["n_train"], run.metrics["n_test"]) == (256, 64)  # the images TINY_SHAPES describes
    again = clinfonce.evaluate(run)  # the Run object, as it is
    assert again["linear_top1"] == run.metrics["linear_top1"]


def test_the_run_in_memory_is_the_run_on_disk(trained) -> None:
    read = Run.read(trained.dir)
    assert read.config == trained.config and read.training == trained.training
    assert read.cluster_stats == trained.cluster_stats and read.skipped == trained.skipped == {}
    assert read.metrics == trained.metrics
    np.testing.assert_array_equal(read.clusters.ids, trained.clusters.ids)
    assert read.clusters.keys == trained.clusters.keys
    # the training rows' clusters (clusters.csv keeps the training rows only)
    rows = load_dataset("shapes", trained.config.data.options).rows("train")
    np.testing.assert_array_equal(read.row_clusters(320)[rows], trained.row_clusters(320)[rows])
    assert (
        read.encoder.info == trained.encoder.info and read.encoder.class_names == trained.encoder.class_names
    )
    for key, value in trained.encoder.network.state_dict().items():
        assert torch.equal(value, read.encoder.network.state_dict()[key]), key
    # the curve is the summary's: one epoch, the loss the engine recorded
    assert read.curve()["train_loss"].tolist() == [trained.training.epoch_loss[0]]


def test_training_summary_and_checkpoint_records_round_trip(trained) -> None:
    summary = trained.training
    assert TrainingSummary.from_dict(summary.to_dict(), "x") == summary
    assert summary.global_batch == 32 and summary.world_size == 1 and summary.bad_steps == []
    # TINY_SHAPES: 256 training images in batches of 32, one epoch
    assert summary.samples_per_epoch == [256]
    checkpoint = torch.load(trained.files.last_checkpoint, weights_only=True)
    meta = CheckpointMeta.read(checkpoint, "last.ckpt")
    assert meta.encoder == trained.encoder.info and meta.world_size == 1
    assert meta.progress.epochs == summary.epoch_loss
    assert list(meta.progress.samples.values()) == summary.samples_per_epoch
    written: dict = {}
    meta.write_into(written)
    assert CheckpointMeta.read(written, "again") == meta
    with pytest.raises(InputError, match=r"training\.json: malformed training summary"):
        TrainingSummary.from_dict({"epoch_loss": {}}, "training.json")


def test_the_encoder_records_how_the_datasets_loader_decoded(tmp_path) -> None:
    """A grayscale, stretched image folder: the encoder file says so, as the dataset's loader does (not
    guessed from a decoded image), and embeds a file exactly as the loader decodes it."""
    for name, value in (("dark", 40), ("light", 210)):
        for i in range(6):
            (tmp_path / "images" / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 14), (value, value - 30 + i, 20)).save(
                tmp_path / "images" / name / f"{i}.png"
            )
    options = {"root": str(tmp_path / "images"), "image_size": 16, "channels": 1, "resize": "stretch"}
    run = clinfonce.train(
        "imagefolder",
        {
            "data.options": options,
            "clusters.source": "none",
            "method.name": "simclr",
            "model.backbone": "small",
            "model.width": 4,
            "model.head_dim": 8,
            "optim.batch_size": 4,
            "train.epochs": 1,
            "train.out": str(tmp_path / "run"),
        },
        evaluate=False,
    )
    dataset = load_dataset("imagefolder", options)
    assert run.encoder.info.input == ImageInput((16, 16), 1, "stretch") == dataset.image_input
    loaded = Encoder.load(run.dir)
    assert loaded.info.input == run.encoder.info.input
    first = tmp_path / "images" / dataset.table["path"].iloc[0]
    expected = loaded.embed(dataset.loader(0)[None])
    np.testing.assert_array_equal(loaded.embed([first]), expected)


def test_a_dataset_other_than_the_configs_is_refused(tmp_path) -> None:
    config = load_config("shapes", [*TINY, f"train.out={tmp_path / 'run'}"])
    other = load_dataset("shapes", {**config.data.options, "n_train": 128})
    with pytest.raises(InputError, match=r"data\.options\.n_train is 128 in the dataset, 256 in the config"):
        engine.train(config, dataset=other)
    with pytest.raises(InputError, match="built by hand"):
        engine.train(config, dataset=shapes_dataset(n_train=256, n_test=64, seed=4))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_start_is_decided_once_and_checked_again_under_the_lock(tmp_path, monkeypatch) -> None:
    calls = []
    original = engine.check_start

    def counted(*args, **kwargs):
        calls.append(RunDir(args[0].train.out).is_free())
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "check_start", counted)
    clinfonce.train("shapes", [*TINY, f"train.out={tmp_path / 'run'}"], evaluate=False)
    assert len(calls) == 2  # once before the dataset is read, once under the run directory's lock
