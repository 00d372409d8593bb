"""K-means Cl-InfoNCE inside training (the paper's Algorithm 1): InfoNCE for the warm-up, then K-means on
the model's own features at the start of every `every`-th epoch; the ids survive a resume."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import mutual_info_score

from clinfonce.clusters import kmeans_clusters
from clinfonce.config import load_config
from clinfonce.data.augment import EvalTransform
from clinfonce.data.registry import load_dataset
from clinfonce.features import extract_features
from clinfonce.models import Network
from clinfonce.training.engine import train
from tiny_runs import TINY_SHAPES

SETTINGS = [*TINY_SHAPES, "clusters.source=kmeans", "clusters.k=12"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", load_config("shapes", SETTINGS).data.options)


def _config(out, *extra):
    return load_config("shapes", [*SETTINGS, f"train.out={out}", *extra])


class _Stop(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_reclusters_on_schedule_with_the_models_own_features(tmp_path, data) -> None:
    run = train(
        _config(tmp_path / "run", "train.epochs=4", "clusters.warmup_epochs=1", "clusters.every=2"),
        dataset=data,
    )
    log = run.files.reclusters()
    assert log["epoch"].tolist() == [1, 3]  # after one warm-up epoch, then every second epoch
    assert (log["n_clusters"] <= 12).all() and (log["n_clusters"] >= 2).all()
    assert {"seconds", "epoch_seconds", "I_Z_T", "H_Z_given_T"} <= set(log.columns)
    # the ids in the buffer are K-means of the L2-normalised head outputs at the start of epoch 3: redo it
    # from the epoch-2 checkpoint's weights, independently of the callback
    checkpoint = torch.load(run.files.checkpoints_dir / "epoch0002.ckpt", weights_only=True)
    encoder = Network("small", True, 16, 8)
    encoder.load_state_dict(
        {k[len("encoder.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
    )
    meta = checkpoint["clinfonce"]
    rows = data.rows("train")
    features = extract_features(
        encoder, data, rows, EvalTransform(meta["crop_size"], meta["mean"], meta["std"]), projection=True
    )
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = kmeans_clusters(features, 12, seed=3, spherical=True).ids
    final = torch.load(run.files.checkpoints_dir / "last.ckpt", weights_only=True)["state_dict"][
        "cluster_ids"
    ].numpy()
    np.testing.assert_array_equal(final[rows], expected)
    assert (final[data.rows("test")] == -1).all()  # only training rows are clustered
    # the log's row for epoch 3 describes those ids: their count, and their mutual information with the labels
    # (scikit-learn, in bits)
    labels = data.table["label"].to_numpy()[rows]
    last = log.set_index("epoch").loc[3]
    assert last["n_clusters"] == len(np.unique(expected))
    # the log rounds to 6 decimals: 5e-7, plus the float64 sums' last bits
    assert abs(last["I_Z_T"] - mutual_info_score(labels, expected) / np.log(2)) < 5e-7 + 1e-9


def test_warm_up_is_infonce_and_ids_survive_a_resume(tmp_path, data) -> None:
    settings = ("train.epochs=3", "clusters.warmup_epochs=1")
    straight = train(_config(tmp_path / "straight", *settings), dataset=data)
    first = train(_config(tmp_path / "resumed", *settings), callbacks=[_Stop(1)], dataset=data)
    stopped = torch.load(first.files.last_checkpoint, weights_only=True)
    assert stopped["epoch"] == 1 and (stopped["state_dict"]["cluster_ids"][data.rows("train")] >= 0).all()
    train(_config(tmp_path / "resumed", *settings, "train.resume=auto"), dataset=data)
    a = pd.read_csv(straight.dir / "reclusters.csv")
    b = pd.read_csv(first.dir / "reclusters.csv")
    columns = ["epoch", "n_clusters", "I_Z_T", "H_Z_given_T"]
    pd.testing.assert_frame_equal(a[columns], b[columns])  # one clustering per epoch, none lost or repeated
    wa = torch.load(straight.files.encoder_path, weights_only=True)["state_dict"]
    wb = torch.load(first.files.encoder_path, weights_only=True)["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)


class _Snapshot(L.Callback):
    """After the re-clustering at the start of each epoch: the training projections K-means could read, the
    epoch each is from, and the ids written."""

    def __init__(self) -> None:
        self.taken: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def on_train_epoch_start(self, trainer, module) -> None:
        bank = module.projections
        self.taken[trainer.current_epoch] = (
            bank.features.clone().numpy(),
            bank.epoch.clone().numpy(),
            module.cluster_ids.clone().numpy(),
        )


def test_kmeans_on_the_previous_epochs_training_projections(tmp_path, data) -> None:
    snapshot = _Snapshot()
    run = train(  # batch 48: the loader drops 256 % 48 = 16 images per epoch
        _config(
            tmp_path / "run", "train.epochs=4", "optim.batch_size=48", "clusters.recluster_features=training"
        ),
        callbacks=[snapshot],
        dataset=data,
    )
    log = run.files.reclusters().set_index("epoch")
    rows = data.rows("train")
    assert log.index.tolist() == [1, 2, 3]
    for epoch in (1, 2, 3):
        bank, seen, ids = snapshot.taken[epoch]
        if (seen[rows] < 0).any():  # an image not seen yet (dropped so far): K-means makes its own pass
            assert log.loc[epoch, "features"] == "pass"
            continue
        assert log.loc[epoch, "features"] == "training"
        assert log.loc[epoch, "older_features"] == (seen[rows] < epoch - 1).sum() <= 16
        expected = kmeans_clusters(bank[rows], 12, seed=epoch, spherical=True).ids
        np.testing.assert_array_equal(ids[rows], expected)
        np.testing.assert_allclose(np.linalg.norm(bank[rows], axis=1), 1, rtol=1e-5)
    assert log.loc[1, "features"] == "pass"  # 16 images were dropped in the one warm-up epoch
    assert (log["features"] == "training").any()


def test_joint_variant_adds_infonce_on_a_second_head(tmp_path, data) -> None:
    run = train(_config(tmp_path / "run", "train.epochs=2", "method.joint_infonce=true"), dataset=data)
    state = torch.load(run.files.last_checkpoint, weights_only=True)["state_dict"]
    second = sorted(k for k in state if k.startswith("objective.instance_head."))
    first = sorted(k for k in state if k.startswith("encoder.head."))
    # a second projection head of the same shape as the first, trained to other weights
    assert [k.split(".", 2)[2] for k in second] == [k.split(".", 2)[2] for k in first] and second
    weights = [k for k in second if k.endswith("weight") and state[k].ndim == 2]
    assert weights and not any(
        torch.equal(state[k], state[k.replace("objective.instance_head.", "encoder.head.")]) for k in weights
    )
    assert run.files.reclusters()["epoch"].tolist() == [1]
