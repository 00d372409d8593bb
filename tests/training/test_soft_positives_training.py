"""Training with soft positives from tags (method.positives: tags): one-hot tags train exactly as their
clusters do, the run records the tags it used, the report says so, and a compare plans it for clinfonce."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import clinfonce
from clinfonce.compare.spec import load_spec, plan
from clinfonce.config import load_config
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError
from clinfonce.training.objectives import SparseRows
from tiny_runs import TINY_SHAPES

TINY = dict(item.split("=", 1) for item in TINY_SHAPES)


def test_sparse_rows_equal_dense_indexing() -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((12, 7)) * (rng.random((12, 7)) < 0.4)
    dense[[3, 8]] = 0
    rows = torch.tensor([8, 0, 3, 11, 0, 5])
    looked_up = SparseRows(sp.csr_array(dense))(rows)
    assert looked_up.is_sparse and looked_up.shape == (6, 7)
    np.testing.assert_allclose(looked_up.to_dense().numpy(), dense[rows.numpy()], rtol=1e-6)


@pytest.fixture(scope="module")
def soft_and_hard(tmp_path_factory):
    """One epoch on the colour tags as soft positives and on the colour clusters (the 4 one-hot colour
    attributes combined): one-hot vectors are exactly the cluster loss, so the runs must agree."""
    root = tmp_path_factory.mktemp("soft")
    common = {**TINY, "train.epochs": 1, "clusters.attributes": ["color"], "eval.probe_epochs": 20}
    soft = clinfonce.train("shapes", {**common, "method.positives": "tags", "train.out": str(root / "soft")})
    hard = clinfonce.train("shapes", {**common, "clusters.top_k": 4, "train.out": str(root / "hard")})
    return soft, hard


def test_one_hot_tags_train_as_their_clusters(soft_and_hard) -> None:
    soft, hard = soft_and_hard
    assert soft.clusters is None and hard.clusters.n_clusters == 4
    assert soft.training.epoch_loss[0] == pytest.approx(hard.training.epoch_loss[0], rel=1e-5)
    soft_state = soft.encoder.network.state_dict()
    for name, value in hard.encoder.network.state_dict().items():
        torch.testing.assert_close(soft_state[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_the_run_records_the_tags_it_used(soft_and_hard) -> None:
    soft, _ = soft_and_hard
    dataset = load_dataset("shapes", {k.split(".")[-1]: v for k, v in TINY.items() if k.startswith("data.")})
    colours = dataset.table.iloc[dataset.rows("train")]["color"].value_counts()
    expected = {f"color={name}": int(count) for name, count in colours.items()}
    saved = json.loads((soft.dir / "clusters.json").read_text())
    assert saved["positives"] == "tags" and saved["n"] == len(dataset.rows("train"))
    assert saved["provenance"]["tags"] == expected  # most frequent first, as value_counts
    assert saved["provenance"]["weighting"] == "tfidf" and not (soft.dir / "clusters.csv").exists()
    assert clinfonce.run.Run.read(soft.dir).positives == saved["provenance"]
    report = (soft.dir / "report.md").read_text()
    assert "soft positives from 4 tags (tfidf weights" in report
    assert all(f"{tag} ({count})" in report for tag, count in expected.items())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method.name": "simclr"}, "method.positives=tags is for method clinfonce, not simclr"),
        ({"clusters.source": "tag_kmeans"}, "takes its tags from clusters.tags"),
        ({"method.positives": "labels"}, "method.positives must be clusters or tags"),
    ],
)
def test_config_refuses_what_cannot_take_soft_positives(overrides, message) -> None:
    with pytest.raises(InputError, match=message):
        load_config("shapes", {"method.positives": "tags", **overrides})


def test_a_compare_setting_with_positives_runs_for_clinfonce_only(tmp_path) -> None:
    spec = load_spec(
        {
            "config": "shapes",
            "overrides": dict(TINY),
            "out": str(tmp_path),
            "methods": ["simclr", "clinfonce", "cluster_ce"],
            "seeds": [0],
            "settings": {"top3": {"top_k": 3}, "soft": {"attributes": ["color"], "positives": "tags"}},
        }
    )
    names = {run.name: run for run in plan(spec)}
    assert sorted(names) == [
        "clinfonce-soft-seed0",
        "clinfonce-top3-seed0",
        "cluster_ce-top3-seed0",
        "simclr-seed0",
    ]
    assert names["clinfonce-soft-seed0"].config.method.positives == "tags"
    assert names["clinfonce-soft-seed0"].config.clusters.attributes == ["color"]
    assert names["clinfonce-top3-seed0"].config.method.positives == "clusters"
