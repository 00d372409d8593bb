"""Shared helpers of the benchmarks: best-of timings, peak resident memory of a block, and the machine
description.

Peak memory on the CPU is read from the kernel: ``/proc/self/clear_refs`` resets the high-water mark
(VmHWM) and the block's peak is VmHWM minus the resident size before it. Each measurement should run in a
fresh process (see ``run_isolated``), with glibc's mmap threshold fixed at 128 KiB: otherwise a freed
large block raises the threshold, later blocks come from the heap and are reused, and RSS no longer shows
what a computation allocates.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_mib(block: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``block`` and return (its peak resident memory above the starting point in MiB, its result)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    result = block()
    return (_status_kib("VmHWM") - before) / 1024, result


def run_isolated(script: str, *args: str, fixed_mmap_threshold: bool = True) -> dict[str, Any]:
    """Run ``python script args...`` in a fresh process; it must print one JSON object last. With
    ``fixed_mmap_threshold`` False the process keeps glibc's own malloc settings: what a user's process has."""
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if fixed_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    output = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True, env=env
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> str:
    """One line describing this machine and the library versions."""
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )


def best_seconds(calls: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Best wall time of each call over ``repeats`` rounds (after one warm-up round), run alternately."""
    for call in calls:
        call()
    best = [math.inf] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - start)
    return best
