"""A method is its row in clinfonce.methods plus its objective: the two tables agree, and a new method added
in exactly those two places trains, is checked by the config and appears in the reports."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pytest
import torch
from torch import nn

import clinfonce
from clinfonce.data.synthetic import shapes_dataset
from clinfonce.errors import InputError
from clinfonce.methods import METHODS, Method
from clinfonce.training.objectives import OBJECTIVES, Batch, ObjectiveInputs
from tiny_runs import TINY_SHAPES


def test_every_method_has_an_objective_and_every_objective_a_method() -> None:
    assert set(OBJECTIVES) == {name for name, method in METHODS.items() if method.trains}
    assert all(name == method.name for name, method in METHODS.items())


def test_every_method_has_its_own_valid_colour() -> None:
    colors = [method.color for method in METHODS.values()]
    assert all(matplotlib.colors.is_color_like(c) for c in colors) and len(set(colors)) == len(colors)


class Alignment(nn.Module):
    """A toy objective: pull the two views of an image together (no negatives); records what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Batch] = []

    def forward(self, encoder, batch: Batch):
        self.seen.append(batch)
        z = encoder(batch.views).view(batch.n, batch.v, -1)  # L2-normalised projections
        return (z[:, 0] - z[:, 1]).pow(2).sum(dim=1).mean(), z


def test_a_new_method_is_a_row_and_an_objective(tmp_path, monkeypatch) -> None:
    built: list[Alignment] = []

    def build(inputs: ObjectiveInputs) -> nn.Module:
        built.append(Alignment())
        return built[-1]

    toy = Method("toy", "nothing", True, "pulls the views of an image together", "#123456")
    # the two places a method lives in
    monkeypatch.setitem(METHODS, "toy", toy)
    monkeypatch.setitem(OBJECTIVES, "toy", build)
    overrides = [*TINY_SHAPES, "method.name=toy", "train.epochs=1", f"train.out={tmp_path / 'run'}"]
    run = clinfonce.train("shapes", overrides)
    (objective,) = built
    data = shapes_dataset(n_train=256, n_test=64, seed=4)  # the data TINY_SHAPES describes, made apart
    labels = data.table["label"].to_numpy()
    assert len(objective.seen) == 256 // 32  # one epoch of full batches
    rows = torch.cat([batch.rows for batch in objective.seen]).numpy()
    assert sorted(rows) == sorted(data.rows("train"))  # every training image once
    for batch in objective.seen:
        assert (batch.n, batch.v) == (32, 2) and batch.views.shape == (64, 3, 32, 32)
        np.testing.assert_array_equal(batch.labels.numpy(), labels[batch.rows.numpy()])
        assert (batch.clusters == -1).all()  # "nothing": no stage 1
    report = (run.dir / "report.md").read_text()
    assert "`toy`: pulls the views of an image together" in report
    assert run.metrics["n_test"] == 64
    # the config's rules read the row: a method that uses nothing takes no joint head
    with pytest.raises(InputError, match="joint_infonce is for method clinfonce, not toy"):
        clinfonce.train("shapes", [*overrides, "method.joint_infonce=true", "train.out=elsewhere"])
