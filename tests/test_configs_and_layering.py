"""Every bundled config is valid; the layers import one way (core free of Lightning, evaluation free of
training)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clinfonce.config import bundled_configs, load_config
from clinfonce.data.registry import DATASETS


@pytest.mark.parametrize("name", bundled_configs())
def test_bundled_config_is_valid(name: str) -> None:
    overrides = {} if name in ("shapes",) else {"data.options.root": "/nonexistent"}
    if name == "table":
        overrides["data.options.table"] = "/nonexistent/meta.csv"
    config = load_config(name, overrides)  # type-checks the dataset options without opening any file
    assert config.data.name in DATASETS and (name not in DATASETS or config.data.name == name)


def test_there_is_a_config_per_dataset() -> None:
    """One named after each dataset (and recipes for real data that a generic dataset reads, such as
    imagenette: an image folder)."""
    assert set(DATASETS) <= set(bundled_configs())


def _imported(modules: str, prefixes: tuple[str, ...]) -> list[str]:
    code = f"import sys, {modules}\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return eval(out)  # a printed list of module names


def test_core_modules_do_not_import_lightning() -> None:
    modules = (
        "clinfonce, clinfonce.losses, clinfonce.clusters, clinfonce.data.registry, clinfonce.data.augment, "
        "clinfonce.models, clinfonce.config, clinfonce.run, clinfonce.evaluation.pipeline"
    )
    assert _imported(modules, ("lightning", "pytorch_lightning")) == []


def test_evaluation_does_not_import_training() -> None:
    assert (
        _imported("clinfonce.evaluation.pipeline, clinfonce.evaluation.report", ("clinfonce.training",)) == []
    )
