"""Online kNN on the validation split during training, and the run's hyper-parameters and evaluation in
TensorBoard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from clinfonce.config import load_config
from clinfonce.data.augment import EvalTransform
from clinfonce.data.registry import load_dataset
from clinfonce.evaluation.knn import knn_accuracy
from clinfonce.evaluation.pipeline import evaluate_checkpoint
from clinfonce.features import extract_features
from clinfonce.models import Network
from clinfonce.training.engine import train


def _image_tree(root, n_per_class: int) -> None:
    rng = np.random.default_rng(0)
    for name, colour in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_online_knn_is_the_knn_of_that_epochs_weights(tmp_path) -> None:
    _image_tree(tmp_path / "images", 20)
    options = {"root": str(tmp_path / "images"), "image_size": 16, "val_fraction": 0.25, "test_fraction": 0.2}
    config = load_config(
        "imagefolder",
        {
            "data.options": options,
            "clusters.source": "labels",
            "model.backbone": "small",
            "model.width": 8,
            "optim.batch_size": 16,
            "train.epochs": 2,
            "train.progress_bar": False,
            "train.keep_checkpoints": 5,
            "train.out": str(tmp_path / "run"),
            "eval.knn_every": 1,
            "eval.knn_k": [5],
            "eval.probe_epochs": 5,
        },
    )
    data = load_dataset("imagefolder", options)
    run = train(config, dataset=data)
    logged = pd.read_csv(run.files.logs_dir / "metrics.csv").dropna(subset=["val/knn5_top1"])
    assert logged["epoch"].tolist() == [0, 1]
    # recompute epoch 2's value from the weights at its end, independently of the callback
    checkpoint = torch.load(run.files.last_checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 1
    encoder = Network("small", True, 128, 8)
    encoder.load_state_dict(
        {k[8:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
    )
    meta = checkpoint["clinfonce"]
    transform = EvalTransform(meta["crop_size"], meta["mean"], meta["std"])
    labels = data.table["label"].to_numpy()
    train_rows, val_rows = data.rows("train"), data.rows("val")
    assert len(val_rows) > 0 and not set(val_rows) & set(train_rows)
    expected = knn_accuracy(
        extract_features(encoder, data, train_rows, transform),
        labels[train_rows],
        extract_features(encoder, data, val_rows, transform),
        labels[val_rows],
        ks=(5,),
    )["knn5_top1"]
    assert logged["val/knn5_top1"].iloc[-1] == pytest.approx(expected, abs=1e-4)
    # TensorBoard: the config as hyper-parameters, and the evaluation beside them
    hparams = yaml.safe_load((run.files.logs_dir / "hparams.yaml").read_text())
    assert hparams["method.name"] == "clinfonce" and hparams["eval.knn_every"] == 1
    metrics = evaluate_checkpoint(run.dir, dataset=data)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = {}
    for events in run.files.logs_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values[tag] = accumulator.Scalars(tag)[-1].value
    assert values["eval/linear_top1"] == pytest.approx(metrics["linear_top1"], abs=1e-4)
    assert "val/knn5_top1" in values and "train/loss_epoch" in values
