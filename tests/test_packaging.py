"""What the package promises about itself: a loss-only install, a fast command line, its version and the
exported names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import clinfonce
import clinfonce.clusters

#: The `train` extra: a loss-only or stage-1-only user has none of these.
TRAIN_EXTRA = (
    "lightning",
    "tensorboard",
    "matplotlib",
    "torchvision",
    "PIL",
    "omegaconf",
    "pyarrow",
    "tabulate",
)

_BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not installed)", name=name)
sys.meta_path.insert(0, Block())
"""


def _python(code: str, blocked: tuple[str, ...] = TRAIN_EXTRA) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the ``blocked`` packages cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCK.format(blocked=blocked) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_loss_and_stage_1_work_without_the_training_extra(tmp_path) -> None:
    result = _python(
        f"""
        import numpy as np, pandas as pd, torch
        from clinfonce import ClInfoNCELoss, attribute_clusters, cluster_stats, hierarchy_clusters, kmeans_clusters
        from clinfonce.clusters import ClusterSpec, build
        loss = ClInfoNCELoss(0.1)(torch.randn(8, 2, 16, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        loss.backward()
        table = pd.DataFrame({{"a": [0, 1, 0, 1], "b": [1, 1, 0, 0], "label": [0, 1, 0, 1]}})
        clusters = attribute_clusters(table, ["a", "b"], k=2)
        assert build(ClusterSpec(source="attributes", attributes=["a", "b"], top_k=2), table).ids.tolist() == clusters.ids.tolist()
        hierarchy_clusters(["x", "y"], {{"x": ["r"], "y": ["r"], "r": []}}, level=0)
        kmeans_clusters(np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), k=4)
        clusters.save({str(tmp_path / "c.csv")!r})
        print(cluster_stats(clusters.ids, table["label"]).I_Z_T)
        blocked = [m for m in {TRAIN_EXTRA!r} if m in sys.modules]
        assert not blocked, blocked
        """
    )
    assert result.returncode == 0, result.stderr


def test_a_command_that_needs_the_training_extra_says_how_to_install_it() -> None:
    result = _python(
        """
        from clinfonce.cli import main
        raise SystemExit(main(["train", "--config", "shapes", "train.epochs=1"]))
        """
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'clinfonce[train]'" in result.stderr and "Traceback" not in result.stderr


def test_help_and_version_import_nothing_heavy() -> None:
    code = """
        import sys
        from clinfonce.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "numpy", "pandas", "lightning", "faiss") if m in sys.modules]
        assert not heavy, heavy
        """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [sys.executable, "-m", "clinfonce.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"clinfonce {clinfonce.__version__}"


def test_the_exported_names_resolve() -> None:
    for module in (clinfonce, clinfonce.clusters):
        assert sorted(module.__all__) == sorted(
            [*module._EXPORTS, *(["__version__"] if module is clinfonce else [])]
        )
        for name in module._EXPORTS:
            assert getattr(module, name) is not None, name


def test_shards_without_their_extra_say_how_to_install_it() -> None:
    result = _python(
        """
        from clinfonce.data.shards import shard_paths
        from clinfonce.errors import InputError
        try:
            shard_paths("train-{0..1}.tar")
        except InputError as error:
            print(error)
        """,
        blocked=("pyarrow",),
    )
    assert (
        result.stdout.strip()
        == "reading WebDataset shards needs pyarrow: pip install 'clinfonce[webdataset]'"
    )
