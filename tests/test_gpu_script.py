"""The prepared GPU measurement (benchmarks/bench_gpu.py) must run when a GPU is lent: its --smoke mode runs
every part of it at tiny sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_gpu.py"


def test_the_gpu_script_runs_every_part_at_tiny_sizes() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(measured["training_images_per_s"]) == {"backbone", "+ loss", "+ loss + augmentation"}
    assert all(rate > 0 for rate in measured["training_images_per_s"].values())
    assert [row["views"] for row in measured["loss"]] == [256, 512]
