"""Config loading: YAML + overrides, and clear errors that name the key."""

from __future__ import annotations

import pytest

from clinfonce.training.config import Config, load_config


def test_defaults_are_valid() -> None:
    config = load_config()
    assert isinstance(config, Config)
    assert config.method.name == "clinfonce" and config.optim.nesterov and config.optim.momentum == 0.95


def test_yaml_then_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.5\n  batch_size: 64\nclusters:\n  attributes: [a, b]\n")
    config = load_config(
        path, ["optim.lr=0.1", "train.out=null", "data.options={n_train: 10}", "train.devices=2"]
    )
    assert config.optim.lr == 0.1 and config.optim.batch_size == 64
    assert config.clusters.attributes == ["a", "b"] and config.train.out is None
    assert config.data.options == {"n_train": 10} and config.train.devices == 2
    assert config.optim.weight_decay == 1e-4  # untouched default


def test_integers_are_accepted_for_floats() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["optimizer.lr=0.1"], "unknown key 'optimizer'"),
        (["optim.lr=fast"], "optim.lr must be a number, got 'fast'"),
        (["optim.batch_size=12.5"], "optim.batch_size must be an integer"),
        (["train.progress_bar=maybe"], "train.progress_bar must be true or false"),
        (["method.name=byol"], "method.name must be one of clinfonce, simclr, supcon, ce"),
        (["method.temperature=0"], "method.temperature must be > 0"),
        (["optim.momentum=1.5"], "optim.momentum must be in [0, 1)"),
        (["clusters.source=file"], "clusters.source=file needs clusters.file"),
        (["clusters.source=none"], "method clinfonce needs clusters"),
        (["clusters.attributes=a"], "clusters.attributes must be a list"),
        (["lr=0.1"], "must look like section.key=value"),
    ],
)
def test_errors_name_the_key(overrides, message) -> None:
    with pytest.raises(ValueError) as error:
        load_config(None, overrides)
    assert message in str(error.value)


def test_file_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config(listing)


def test_optimizer_follows_the_config() -> None:
    import torch

    from clinfonce.training.module import build_optimizer

    decay, no_decay = [torch.nn.Parameter(torch.zeros(2, 2))], [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(load_config().optim, decay, no_decay)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.95
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]
    adamw = build_optimizer(load_config(None, ["optim.name=adamw", "optim.lr=0.003"]).optim, decay, no_decay)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 0.003
