"""Runs are never mixed or clobbered, and kills lose nothing: SIGKILLs at random moments (one aimed at a
checkpoint write), each followed by --resume, end with exactly the weights and metrics of a run that was
never interrupted."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from clinfonce._io import TEMP_MARKER
from clinfonce.cli import main
from clinfonce.config import load_config
from clinfonce.errors import RunStopped
from clinfonce.evaluation.pipeline import evaluate_checkpoint
from clinfonce.evaluation.report import render_run_report
from clinfonce.run import RunDir, checkpoint_step
from clinfonce.training.engine import train
from tiny_runs import TINY_SHAPES

TINY = [
    *TINY_SHAPES,
    "data.options.seed=3",
    "train.log_every_n_steps=1",
    "eval.probe_epochs=10",
    "eval.knn_k=[5]",
]


def _train(run: Path, *extra: str) -> int:
    overrides = [item for item in extra if not item.startswith("--")]
    flags = [item for item in extra if item.startswith("--")]
    return main(["train", *TINY, f"train.out={run}", "train.epochs=1", *overrides, "--no-eval", *flags])


def test_resume_with_another_config_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(run) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _train(run, "method.name=simclr", "model.width=4", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "differs from the run's in method.name, model.width" in err and "\n" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_existing_run_needs_resume_or_overwrite(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(run) == 0
    (run / "checkpoints" / "stale-marker.ckpt").write_bytes(b"from the old run")
    assert _train(run) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert _train(run, "--overwrite", "model.width=4") == 0  # a new run, not a mix with the old one
    assert RunDir(run).config().model.width == 4 and not (run / "checkpoints" / "stale-marker.ckpt").exists()
    steps = pd.read_csv(run / "logs" / "metrics.csv")["step"]
    assert steps.is_monotonic_increasing and steps.max() < 256 // 32


def test_a_folder_that_is_not_a_run_is_never_overwritten(tmp_path, capsys) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md").write_text("my notes")
    for extra in ((), ("--overwrite",), ("--resume",)):
        assert _train(folder, *extra) == 2
        assert "holds no run" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["report.md"]


def test_only_the_newest_checkpoints_are_kept(tmp_path) -> None:
    run = tmp_path / "run"
    assert _train(run, "train.epochs=4", "train.keep_checkpoints=2") == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch0002.ckpt", "epoch0003.ckpt", "last.ckpt"]


def test_resume_uses_the_newest_loadable_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    assert _train(run, "train.epochs=2", "train.checkpoint_every_n_steps=3") == 0
    folder = RunDir(run)
    assert folder.newest_checkpoint() == folder.last_checkpoint  # step 16: last.ckpt wins the tie
    folder.last_checkpoint.write_bytes(b"torn by a failing disk")
    newest = folder.newest_checkpoint()
    assert newest is not None and newest.name == "epoch0001.ckpt" and checkpoint_step(newest) == 16
    (run / "checkpoints" / "epoch0001.ckpt").unlink()
    assert folder.newest_checkpoint().name == "step00000015.ckpt"


def test_a_run_directory_is_locked_while_a_process_writes_it(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = (
        "import sys, time\nfrom clinfonce.run import RunDir\n"
        "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _train(run) == 2
        assert f"in use by another clinfonce process (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert _train(run, "--resume") == 0  # the lock died with its holder


def _command(run: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clinfonce.cli",
        "train",
        *TINY,
        "data.options.n_train=512",  # 16 steps per epoch
        "train.epochs=3",
        "train.checkpoint_every_n_steps=1",
        "train.keep_checkpoints=2",
        f"train.out={run}",
        "--no-eval",
    ]


def _temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if TEMP_MARKER in p.name]


def _assert_nothing_corrupt(run: Path) -> None:
    """What a kill may leave: temporary files and a lock, never a torn or empty file in place."""
    for path in run.rglob("*"):
        if path.is_file() and TEMP_MARKER not in path.name and path.name != RunDir.LOCK:
            assert path.stat().st_size > 0, f"{path} is empty"
    for path in (run / "checkpoints").glob("[!.]*.ckpt") if (run / "checkpoints").is_dir() else []:
        assert checkpoint_step(path) is not None, f"{path} does not load"
    if (run / "logs" / "metrics.csv").exists():
        pd.read_csv(run / "logs" / "metrics.csv")
    if (run / "config.yaml").exists():
        RunDir(run).config()


def _kill_once(run: Path, rng: random.Random, aim_at_a_write: bool) -> int | None:
    """Start the run (resuming when it exists) and SIGKILL it once it has trained a few steps (a random
    number, then a random fraction of a step later) or while it writes a checkpoint; returns the newest step
    saved, None if the run finished first."""
    command = [*_command(run), *(["--resume"] if (run / "config.yaml").exists() else [])]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, saves, delay = time.monotonic() + 120, rng.randint(1, 4), rng.uniform(0.0, 0.05)
    saved: set[str] = set()  # checkpoints this process wrote (older ones are deleted as it goes)
    while process.poll() is None and time.monotonic() < deadline:
        fresh = [p for p, mtime in _files(run / "checkpoints") if mtime > started]
        if aim_at_a_write and any(TEMP_MARKER in p.name for p in fresh):
            break  # this process is writing a checkpoint right now
        saved |= {p.name for p in fresh if TEMP_MARKER not in p.name and p.name != RunDir.LAST_CHECKPOINT}
        if len(saved) >= (8 if aim_at_a_write else saves):  # an aimed kill that missed every write: now
            time.sleep(delay)  # somewhere in the next step
            break
        time.sleep(0.001)
    if process.poll() is not None:
        assert process.returncode == 0, process.stderr.read().decode()
        return None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    newest = RunDir(run).newest_checkpoint()
    return -1 if newest is None else checkpoint_step(newest)


def _files(folder: Path) -> list[tuple[Path, float]]:
    """``(path, mtime)`` of the files in ``folder`` now; files the training deletes meanwhile are passed over."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        try:
            found.append((path, path.stat().st_mtime))
        except FileNotFoundError:
            continue
    return found


def test_sigkills_at_random_moments_lose_nothing(tmp_path) -> None:
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), check=True, capture_output=True)
    steps, run, rng = [], tmp_path / "killed", random.Random(0)
    for attempt in range(12):
        if len(steps) >= 5:
            break
        step = _kill_once(run, rng, aim_at_a_write=attempt in (1, 3))
        if step is not None:
            steps.append(step)
        _assert_nothing_corrupt(run)
    assert len(steps) >= 5 and steps == sorted(steps), steps  # every kill came after progress
    assert any(step % (512 // 32) for step in steps), steps  # some resumes start in mid-epoch
    subprocess.run([*_command(run), "--resume"], check=True, capture_output=True)
    assert _temporaries(run) == []
    with RunDir(run).lock():  # no process holds the run any more
        pass
    a = torch.load(straight / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    for key in a:  # CPU training is deterministic: bitwise the same weights
        assert torch.equal(a[key], b[key]), key
    metrics = [evaluate_checkpoint(path, device="cpu") for path in (straight, run)]
    assert metrics[0]["linear_top1"] == metrics[1]["linear_top1"]
    assert metrics[0]["knn5_top1"] == metrics[1]["knn5_top1"]
    curve = RunDir(run).training_curve()
    assert curve["epoch"].tolist() == [0, 1, 2]  # every epoch once, none lost
    pd.testing.assert_frame_equal(curve, RunDir(straight).training_curve())  # means over every step


def test_a_non_finite_loss_stops_with_one_line_and_a_debug_checkpoint(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(run, "optim.lr=1e6", "train.epochs=2") == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]  # after the progress lines
    assert "training stopped at step" in err and "the loss is nan" in err and "optim.lr" in err
    debug = list((run / "checkpoints").glob("debug-step*.ckpt"))
    assert len(debug) == 1 and checkpoint_step(debug[0]) is not None
    assert RunDir(run).newest_checkpoint() in (
        None,
        run / "checkpoints" / "epoch0000.ckpt",
    )  # never the debug
    assert not (run / "encoder.pt").exists()


class _PoisonStep(L.Callback):
    """Makes the gradients of the given optimizer steps NaN, as an overflow in the backward pass would."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_after_backward(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.global_step in self.steps:
            next(module.parameters()).grad.fill_(float("nan"))


def test_bad_steps_within_the_budget_are_skipped_and_counted(tmp_path) -> None:
    settings = [*TINY, "train.epochs=1", "train.max_bad_steps=2"]
    clean = train(load_config("shapes", [*settings, f"train.out={tmp_path / 'clean'}"]))
    poisoned = train(
        load_config("shapes", [*settings, f"train.out={tmp_path / 'poisoned'}"]),
        callbacks=[_PoisonStep({3, 5})],
    )
    assert poisoned.training.bad_steps == [3, 5] and clean.training.bad_steps == []
    assert poisoned.files.training() == poisoned.training  # what training.json holds
    weights = [
        torch.load(run.files.encoder_path, weights_only=True)["state_dict"] for run in (clean, poisoned)
    ]
    assert all(torch.isfinite(v).all() for v in weights[1].values() if v.is_floating_point())
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # two steps were left out
    report = render_run_report(name="r", metrics={}, trained=poisoned.training)
    assert "non-finite loss or gradient: 2" in report
    with pytest.raises(RunStopped, match="training stopped at step 3"):  # over the budget: stop
        train(
            load_config("shapes", [*TINY, "train.epochs=1", f"train.out={tmp_path / 'stopped'}"]),
            callbacks=[_PoisonStep({3})],
        )


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path) -> None:
    run = tmp_path / "run"

    def default_ctrl_c() -> None:  # a job started in the background of a script inherits an ignored SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # the whole run takes a few seconds: on a loaded machine the watching loop below must not be
        # starved past its end (seen with both cores busy), so the run yields the CPU to it
        os.nice(19)

    process = subprocess.Popen(
        _command(run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c
    )

    def steps_saved() -> int:  # the newest step checkpoint's step (older ones are deleted as it goes)
        names = [p.name for p, _ in _files(run / "checkpoints") if p.name.startswith("step")]
        return max((int(name[4:12]) for name in names if name[4:12].isdigit()), default=0)

    while process.poll() is None and steps_saved() < 3:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    last_line = err.strip().splitlines()[-1]
    assert "interrupted at step" in last_line and f"--config {run / 'config.yaml'} --resume" in last_line
    saved = checkpoint_step(run / "checkpoints" / "last.ckpt")
    assert saved is not None and saved >= 3
    subprocess.run([*_command(run), "--resume"], check=True, capture_output=True)
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == 3 * 512 // 32
    assert not list((run / "checkpoints").glob("last-v*"))


def test_a_full_disk_is_one_line_and_leaves_only_whole_files(tmp_path) -> None:
    run = tmp_path / "run"

    def limit_file_size() -> None:  # like a full disk: writes past 100 kB fail (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run(_command(run), capture_output=True, text=True, preexec_fn=limit_file_size)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1].startswith("clinfonce train: error: [Errno 27] File too large")
    )
    assert _temporaries(run) == []
    _assert_nothing_corrupt(run)
    assert RunDir(run).newest_checkpoint() is None  # no checkpoint could be written: --resume starts over


def test_resuming_from_a_checkpoint_of_another_model_is_one_line(tmp_path, capsys) -> None:
    other = tmp_path / "other"
    assert _train(other, "model.width=4") == 0
    capsys.readouterr()
    checkpoint = other / "checkpoints" / "last.ckpt"
    assert _train(tmp_path / "new", f"train.resume={checkpoint}") == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.endswith("saved with other model.width than this config; it cannot resume it") and "\n" not in err
    )
