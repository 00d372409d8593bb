"""Whole runs of two processes on CPUs (gloo), started the ways docs/distributed.md documents: Lightning's own
launcher (``train.devices=2``), ``torchrun`` on one node, and ``torchrun`` on two "nodes" of this machine.

Each start costs a few seconds per process, so the runs are small (the shapes dataset, a narrow network)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clinfonce.data.registry import load_dataset
from clinfonce.data.synthetic import shapes_dataset
from clinfonce.encoder import Encoder
from clinfonce.evaluation.pipeline import evaluate_encoder
from clinfonce.run import RunDir
from tiny_runs import TINY_SHAPES

SMALL = [*TINY_SHAPES, "train.accelerator=cpu", "eval.probe_epochs=2"]
TWO_PROCESSES = ["train.devices=2", "train.strategy=ddp"]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def _clinfonce(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "clinfonce", *args], cwd)


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def test_one_step_on_two_processes_equals_one_process_on_the_global_batch(tmp_path) -> None:
    """Same initial weights, the same 16 images, the default augmentation, float64: one SGD step of 2
    processes x 8 images gives the parameters of 1 process x 16 images by default: each process draws the
    global batch's views and keeps its images' rows, and batch norm uses the global batch when several
    processes train. With each process normalising its own 8 images (train.sync_batchnorm=false, DDP's
    default) the batch-norm statistics and hence the step differ."""
    same = [
        "train", "--config", "shapes", "--no-eval", *TINY_SHAPES,
        "data.options.n_train=16", "data.options.n_test=8",
        "train.epochs=1", "train.accelerator=cpu", "train.precision=64-true", "optim.name=sgd", "optim.lr=0.5",
    ]  # fmt: skip
    _clinfonce(*same, "optim.batch_size=16", f"train.out={tmp_path / 'one'}", cwd=tmp_path)
    _clinfonce(*same, "optim.batch_size=8", *TWO_PROCESSES, f"train.out={tmp_path / 'two'}", cwd=tmp_path)
    _clinfonce(
        *same, "optim.batch_size=8", *TWO_PROCESSES, "train.sync_batchnorm=false",
        f"train.out={tmp_path / 'local'}", cwd=tmp_path,
    )  # fmt: skip

    def weights(name: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / name / "encoder.pt", weights_only=True)["state_dict"]

    one, two, local = weights("one"), weights("two"), weights("local")
    assert one["head.net.3.weight"].dtype == torch.float64
    for key, value in one.items():
        if value.is_floating_point():
            torch.testing.assert_close(two[key], value, rtol=1e-10, atol=1e-12, msg=key)
    moved = max(float((one[k] - local[k]).abs().max()) for k in one if one[k].is_floating_point())
    assert moved > 1e-3  # per-process batch norm is a different step
    losses = [
        json.loads((tmp_path / name / "training.json").read_text())["epoch_loss"]["0"]
        for name in ("one", "two")
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)  # the curve's running sum is kept in float32


_RECORDING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import lightning as L

    from clinfonce.config import load_config
    from clinfonce.training.engine import train


    class RecordRows(L.Callback):
        def __init__(self, folder):
            self.folder, self.rows = Path(folder), []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.rows += batch[2].tolist()

        def on_train_epoch_end(self, trainer, module):
            name = f"rows-{trainer.current_epoch}-{trainer.global_rank}.json"
            (self.folder / name).write_text(json.dumps(self.rows))
            self.rows = []


    train(load_config("shapes", sys.argv[2:]), callbacks=[RecordRows(sys.argv[1])])
    """
)


def test_two_processes_on_webdataset_shards_see_every_sample_once_per_epoch(tmp_path) -> None:
    """The shapes data packed into 5 uneven shards and trained by 2 processes: each epoch the processes'
    samples are disjoint and together every training sample once, as training.json's samples_per_epoch
    records."""
    from clinfonce.data.pack import pack_dataset

    pack_dataset(shapes_dataset(n_train=256, n_test=64, seed=4), tmp_path / "shards", shard_size=60)
    script = tmp_path / "train_recording.py"
    script.write_text(_RECORDING_SCRIPT)
    run = tmp_path / "run"
    shards = [
        "data.name=webdataset",
        f"data.options={{shards: [{tmp_path / 'shards'}], image_size: 32, resize: stretch}}",
        "clusters.attributes=[round, hollow]",
        "clusters.top_k=2",
    ]
    not_shapes = [item for item in SMALL if not item.startswith("data.")]
    settings = [*not_shapes, *TWO_PROCESSES, *shards, "train.epochs=2", f"train.out={run}"]
    _run([sys.executable, str(script), str(tmp_path), *settings], tmp_path)
    for epoch in range(2):
        seen = [json.loads((tmp_path / f"rows-{epoch}-{rank}.json").read_text()) for rank in range(2)]
        assert [len(rows) for rows in seen] == [128, 128] and set(seen[0]).isdisjoint(seen[1])
        assert set(seen[0]) | set(seen[1]) == set(
            range(64, 320)
        )  # shards in name order: test-*, then train-*
    assert json.loads((run / "training.json").read_text())["samples_per_epoch"] == [256, 256]


def test_torchrun_shards_every_epoch_and_kmeans_reclusters_on_rank_0(tmp_path) -> None:
    """torchrun --standalone --nproc_per_node 2: Lightning takes the processes torchrun started. Each
    epoch the two shards are disjoint and together are every training image once (256 = 4 global batches of
    64); K-means on the training projections (gathered to rank 0) re-clusters, logged once."""
    script = tmp_path / "train_recording.py"
    script.write_text(_RECORDING_SCRIPT)
    run = tmp_path / "run"
    command = _torchrun("--standalone", "--nproc_per_node", "2", str(script))
    settings = [
        *SMALL, *TWO_PROCESSES, "train.epochs=3", f"train.out={run}",
        "clusters.source=kmeans", "clusters.k=8", "clusters.recluster_features=training",
    ]  # fmt: skip
    _run([*command, str(tmp_path), *settings], tmp_path)

    training_rows = set(shapes_dataset(n_train=256, n_test=64, seed=4).rows("train").tolist())
    for epoch in range(3):
        shards = [json.loads((tmp_path / f"rows-{epoch}-{rank}.json").read_text()) for rank in range(2)]
        assert [len(shard) for shard in shards] == [128, 128]
        assert set(shards[0]).isdisjoint(shards[1])
        assert set(shards[0]) | set(shards[1]) == training_rows
    reclusters = pd.read_csv(run / "reclusters.csv")
    assert reclusters["epoch"].tolist() == [1, 2]  # once each, by rank 0
    assert (reclusters["features"] == "training").all()  # no extra pass: every row has a projection
    assert reclusters["older_features"].tolist() == [0, 0]
    environment = json.loads((run / "environment.json").read_text())
    assert environment["processes"]["world_size"] == 2
    assert (run / "encoder.pt").is_file()
    ids = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["cluster_ids"]
    assert (
        int(ids.max()) < 8 and len(np.unique(ids[sorted(training_rows)])) == reclusters["n_clusters"].iloc[-1]
    )


_POISON_SCRIPT = textwrap.dedent(
    """
    import sys

    import lightning as L

    from clinfonce.config import load_config
    from clinfonce.training.engine import train


    class PoisonRankOne(L.Callback):  # a gradient overflow on one process only, after DDP's all-reduce
        def on_after_backward(self, trainer, module):
            if trainer.global_step == 2 and trainer.global_rank == 1:
                next(module.parameters()).grad.fill_(float("nan"))


    train(load_config("shapes", sys.argv[1:]), callbacks=[PoisonRankOne()])
    """
)


def test_a_bad_step_on_one_process_is_skipped_by_all(tmp_path) -> None:
    """The non-finite check decides for every process alike: a NaN gradient on rank 1 only makes both skip
    step 2 (were only rank 1 to skip, the copies of the model would drift apart; were it to stop alone, the
    other would wait for it forever)."""
    script = tmp_path / "train_poisoned.py"
    script.write_text(_POISON_SCRIPT)
    run = tmp_path / "run"
    settings = [*SMALL, *TWO_PROCESSES, "train.epochs=1", "train.max_bad_steps=1", f"train.out={run}"]
    _run([*_torchrun("--standalone", "--nproc_per_node", "2", str(script)), *settings], tmp_path)
    assert json.loads((run / "training.json").read_text())["bad_steps"] == [2]


def test_lightning_launcher_run_evaluates_once_and_resumes(tmp_path) -> None:
    """clinfonce train ... train.devices=2 train.strategy=ddp: trains, checkpoints, evaluates (on rank 0
    only, one report), and resumes with more epochs; the learning rate scaled linearly to the global batch.
    One process cannot resume it."""
    run = tmp_path / "run"
    scaled = [*SMALL, *TWO_PROCESSES, "optim.lr_scaling=linear"]  # shapes: adamw at lr 0.01
    first = _clinfonce(
        "train", "--config", "shapes", *scaled, "train.epochs=1", f"train.out={run}", cwd=tmp_path
    )
    assert first.stdout.count("trained:") == 1 and first.stdout.count("report:") == 1
    assert (
        first.stderr.count("stage 1:") == 2
    )  # "... clusters of N images ..." and its result, from rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_test"]) == (256, 64)  # rank 0 evaluated every image, not its shard
    # and its numbers are those of the saved encoder evaluated here, in one process, by the same protocol.
    # Both runs are on this machine, but in processes with other thread counts: the features can differ in
    # their last bits, which may move an image across the probe's boundary, hence one test image (1.5625 %)
    config = RunDir(run).config()
    here = evaluate_encoder(
        Encoder.load(run), load_dataset("shapes", config.data.options), config.eval
    ).metrics
    for key in ("linear_top1", "knn20_top1"):
        assert abs(metrics[key] - here[key]) <= 100 / 64 + 1e-9, (key, metrics[key], here[key])
    trained = json.loads((run / "training.json").read_text())
    assert trained["global_batch"] == 64 and trained["lr"] == pytest.approx(0.01 * 64 / 256)
    assert "batch 32 x 2 processes = 64, lr 0.0025" in (run / "report.md").read_text()
    assert json.loads((run / "environment.json").read_text())["processes"]["world_size"] == 2

    second = _clinfonce(
        "train", "--config", "shapes", *scaled, "train.epochs=2", f"train.out={run}",
        "--resume", "--no-eval", cwd=tmp_path,
    )  # fmt: skip
    assert second.stdout.count("trained:") == 1
    losses = json.loads((run / "training.json").read_text())["epoch_loss"]
    assert list(losses) == ["0", "1"]
    assert json.loads((run / "environment.resumed.json").read_text())["processes"]["world_size"] == 2

    # its checkpoint cannot continue in one process: the global batch and the epoch's steps would change
    one = subprocess.run(
        [sys.executable, "-m", "clinfonce", "train", "--config", "shapes", *SMALL, "optim.lr_scaling=linear",
         f"train.out={tmp_path / 'one'}", "--resume", str(run / "checkpoints" / "last.ckpt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 2 and "Traceback" not in one.stderr
    assert "was trained by 2 process(es), this start has 1" in one.stderr
    assert not (tmp_path / "one" / "encoder.pt").exists()


def test_two_processes_resume_in_the_middle_of_an_epoch_exactly(tmp_path) -> None:
    """A 2-process run continued from a checkpoint saved after step 3 of 4 (epoch 0) ends with bitwise the
    weights of the uninterrupted run: each process skips exactly its share of the 3 trained batches."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    same = ["train", "--config", "shapes", "--no-eval", *SMALL, *TWO_PROCESSES, "train.epochs=2"]
    _clinfonce(*same, "train.checkpoint_every_n_steps=3", f"train.out={straight}", cwd=tmp_path)
    (step_3,) = (straight / "checkpoints").glob("step00000003*.ckpt")
    _clinfonce(
        *same,
        "train.checkpoint_every_n_steps=3",
        f"train.out={resumed}",
        "--resume",
        str(step_3),
        cwd=tmp_path,
    )
    a = torch.load(straight / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "encoder.pt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    summaries = [json.loads((run / "training.json").read_text()) for run in (straight, resumed)]
    # the curve: the same up to float32 rounding (the resumed epoch's running sum is shared out between the
    # processes and added up again, in another order)
    assert summaries[0]["epoch_loss"].keys() == summaries[1]["epoch_loss"].keys()
    for epoch, loss in summaries[0]["epoch_loss"].items():
        assert summaries[1]["epoch_loss"][epoch] == pytest.approx(loss, rel=1e-6)
    # every epoch consumed all 256 training images over both processes, the resumed one too
    assert summaries[0]["samples_per_epoch"] == summaries[1]["samples_per_epoch"] == [256, 256]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_on_two_nodes(tmp_path) -> None:
    """Two torchrun agents, node ranks 0 and 1, one process each, rendezvous at 127.0.0.1: the command of
    docs/distributed.md for several machines, with both "machines" here."""
    run, port = tmp_path / "run", _free_port()
    args = [
        "train", "--config", "shapes", "--no-eval", *SMALL, "train.epochs=1",
        "train.num_nodes=2", "train.devices=1", "train.strategy=ddp", f"train.out={run}",
    ]  # fmt: skip
    rendezvous = ["--nnodes", "2", "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port"]
    agents = [
        subprocess.Popen(
            _torchrun(*rendezvous, str(port), "--node_rank", str(node), "-m", "clinfonce", *args),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in range(2)
    ]
    outputs = [agent.communicate(timeout=600) for agent in agents]
    for agent, (_, stderr) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, stderr[-4000:]
    assert sum(stdout.count("trained:") for stdout, _ in outputs) == 1
    processes = json.loads((run / "environment.json").read_text())["processes"]
    assert processes == {
        "world_size": 2,
        "num_nodes": 2,
        "devices_per_node": 1,
        "strategy": "DDPStrategy",
        "precision": "32-true",  # auto, on CPUs
    }
    assert (run / "encoder.pt").is_file()


def _slurm_is_up() -> bool:
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return state.returncode == 0 and "idle" in state.stdout


@pytest.mark.skipif(not _slurm_is_up(), reason="needs SLURM (srun, and an idle node in sinfo)")
def test_srun_two_tasks(tmp_path) -> None:
    """srun starts the two tasks; Lightning reads SLURM's variables (SLURM_PROCID, SLURM_NTASKS, ...)."""
    run = tmp_path / "run"
    args = [
        "train",
        "--config",
        "shapes",
        "--no-eval",
        *SMALL,
        *TWO_PROCESSES,
        "train.epochs=1",
        f"train.out={run}",
    ]
    result = _run(
        ["srun", "--ntasks", "2", "--ntasks-per-node", "2", sys.executable, "-m", "clinfonce", *args],
        tmp_path,
    )
    assert result.stdout.count("trained:") == 1
    environment = json.loads((run / "environment.json").read_text())
    assert environment["processes"]["world_size"] == 2
    assert (run / "encoder.pt").is_file()
