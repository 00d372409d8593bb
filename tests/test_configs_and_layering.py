"""Every shipped config is valid; the core modules stay free of Lightning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clinfonce.data.registry import DATASETS
from clinfonce.training.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    assert config.data.name in DATASETS
    assert path.stem == config.data.name  # one config per dataset, named after it


def test_there_is_a_config_per_dataset() -> None:
    assert {p.stem for p in CONFIGS} == set(DATASETS)


def test_core_modules_do_not_import_lightning() -> None:
    code = (
        "import sys, clinfonce, clinfonce.losses, clinfonce.clusters, clinfonce.data.registry, "
        "clinfonce.data.augment, clinfonce.models, clinfonce.evaluation.linear_probe, clinfonce.evaluation.knn\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
