"""Config loading: YAML + overrides, and clear errors that name the key."""

from __future__ import annotations

import pytest

from clinfonce.config import Config, bundled_configs, config_yaml, load_config


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
    assert config.data.options["n_train"] == 10 and config.train.devices == 2
    assert config.data.options["n_test"] == 2000  # the dataset's own default, filled in
    assert config.optim.weight_decay == 1e-4  # untouched default


def test_integers_are_accepted_for_floats() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


def test_exponent_floats_that_yaml_reads_as_strings(tmp_path) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float key still gets the number
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 5e-4}\n")
    assert load_config(path).optim.lr == 0.0005


def test_one_list_syntax_everywhere() -> None:
    as_yaml = load_config(None, ["clusters.attributes=[a, b]", "eval.knn_k=[5, 10]"])
    as_commas = load_config(None, ["clusters.attributes=a,b", "eval.knn_k=5,10"])
    assert as_yaml.clusters.attributes == as_commas.clusters.attributes == ["a", "b"]
    assert as_yaml.eval.knn_k == as_commas.eval.knn_k == [5, 10]


def test_mapping_overrides_and_mapping_configs() -> None:
    config = load_config({"optim": {"lr": 0.2}}, {"train.epochs": 3})
    assert config.optim.lr == 0.2 and config.train.epochs == 3


def test_bundled_configs_by_name_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config("shapes")
    assert config.data.name == "shapes" and config.clusters.top_k == 5
    assert "shapes" in bundled_configs()
    with pytest.raises(ValueError, match=r"bundled configs: .*shapes"):
        load_config("shapez")


def test_resolved_config_round_trips_through_yaml(tmp_path) -> None:
    config = load_config("shapes", ["optim.lr=0.5"])
    path = tmp_path / "again.yaml"
    path.write_text(config_yaml(config))
    assert load_config(path) == config


def test_python_tags_in_yaml_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("optim: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["optimizer.lr=0.1"], "unknown key 'optimizer'"),
        (["optim.lr=fast"], "optim.lr: Value 'fast' of type 'str' could not be converted to Float"),
        (["optim.batch_size=12.5"], "optim.batch_size: Value '12.5' of type 'float' could not be converted"),
        (["train.progress_bar=maybe"], "train.progress_bar: Value 'maybe' is not a valid bool"),
        (
            ["data.options.n_trian=5"],
            "unknown key 'data.options.n_trian' (did you mean 'data.options.n_train'?)",
        ),
        (["data.options.n_train=many"], "data.options.n_train: Value 'many'"),
        (["data.name=cub200"], "data.options.root is required"),
        (["data.name=cub"], "unknown dataset 'cub'"),
        (["method.name=byol"], "method.name must be one of clinfonce, simclr, supcon, ce"),
        (["method.temperature=0"], "method.temperature must be > 0"),
        (["optim.momentum=1.5"], "optim.momentum must be in [0, 1)"),
        (["clusters.source=file"], "clusters.source=file needs clusters.file"),
        (["clusters.source=none"], "method clinfonce needs clusters"),
        (["clusters.attributes={a: 1}"], "clusters.attributes must be a list"),
        (["clusters.level=-1"], "clusters.level must be >= 0"),
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


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("none", 0.3), ("linear", 0.3 * 1024 / 256), ("sqrt", 0.3 * 2.0)],
)
def test_learning_rate_follows_the_global_batch_as_asked(rule: str, expected: float) -> None:
    """SimCLR's linear rule (lr x batch / 256) and the square-root rule, for a global batch of 1024."""
    from clinfonce.training.module import scaled_lr

    optim = load_config(None, ["optim.lr=0.3", f"optim.lr_scaling={rule}"]).optim
    assert scaled_lr(optim, 1024) == pytest.approx(expected)
    half = load_config(None, ["optim.lr=0.3", f"optim.lr_scaling={rule}", "optim.lr_reference_batch=512"])
    assert scaled_lr(half.optim, 512) == pytest.approx(0.3)


def test_unknown_lr_scaling_is_refused() -> None:
    with pytest.raises(ValueError, match=r"optim\.lr_scaling must be one of none, linear, sqrt"):
        load_config(None, ["optim.lr_scaling=cubic"])


def test_auto_precision_is_bf16_mixed_on_cuda_with_bfloat16_only(monkeypatch) -> None:
    import torch

    from clinfonce.training.engine import resolved_precision

    def train(*overrides: str):
        return load_config(None, list(overrides)).train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolved_precision(train()) == "32-true"
    assert resolved_precision(train("train.precision=16-mixed")) == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    native = {"bf16": True}

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native["bf16"] or including_emulation  # torch's own answer counts emulation by default

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolved_precision(train()) == "bf16-mixed"
    assert resolved_precision(train("train.accelerator=cpu")) == "32-true"
    assert resolved_precision(train("train.precision=32-true")) == "32-true"
    with pytest.raises(ValueError, match=r"train\.strategy=ddp_fork .*set train\.precision"):
        resolved_precision(train("train.strategy=ddp_fork"))
    native["bf16"] = False  # e.g. a V100 or a T4: bf16 only emulated, slow
    assert resolved_precision(train("train.accelerator=gpu")) == "32-true"


def test_a_setting_the_backbone_does_not_read_makes_no_different_run() -> None:
    from clinfonce.models import build_backbone
    from clinfonce.run import config_differences

    def config(backbone: str, **model) -> Config:
        return load_config(
            "shapes", {"model.backbone": backbone, **{f"model.{k}": v for k, v in model.items()}}
        )

    # the reference: which settings change the network build_backbone makes
    def same_network(backbone: str, setting: str, a, b) -> bool:
        first, second = (
            build_backbone(backbone, **{setting: a})[0],
            build_backbone(backbone, **{setting: b})[0],
        )
        return [p.shape for p in first.parameters()] == [p.shape for p in second.parameters()]

    for backbone, setting, a, b in [
        ("small", "width", 8, 16),
        ("resnet18", "width", 8, 16),
        ("small", "small_images", True, False),
        ("resnet18", "small_images", True, False),
    ]:
        differences = config_differences(config(backbone, **{setting: a}), config(backbone, **{setting: b}))
        assert (differences == []) == same_network(backbone, setting, a, b), (backbone, setting)
    # a setting the old run's backbone read is a difference, even if the new one's does not
    assert config_differences(config("small", width=8), config("resnet18", width=16)) == [
        "model.backbone",
        "model.width",
    ]
