"""What a run directory records about the machine and the software, for reproducibility."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import socket
import sys
from typing import Any

import torch

_PACKAGES = ("clinfonce", "torch", "torchvision", "lightning", "numpy", "pandas", "scikit-learn", "faiss-cpu")


def environment(seed: int, processes: dict[str, Any]) -> dict[str, Any]:
    """Seed, command line, time, host, Python and package versions, the accelerators seen and, as
    ``processes``, how many processes train together (``world_size``, ``num_nodes``, ...)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "seed": seed,
        "command": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "processes": dict(processes),
    }
