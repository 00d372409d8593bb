"""Run configuration: typed sections, read from YAML, overridden by ``section.key=value`` arguments, and
validated with messages that name the key at fault.

The resolved configuration is written to every run directory (``config.yaml``), so a run can be repeated
with ``clinfonce train --config RUN/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from clinfonce.errors import InputError

METHODS = ("clinfonce", "simclr", "supcon", "ce")
CLUSTER_SOURCES = ("attributes", "hierarchy", "labels", "file", "none")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


@dataclass
class DataConfig:
    """Which dataset and how to read it."""

    name: str = "shapes"
    #: keyword arguments of the dataset's loader (root directories, image size, seeds, ...)
    options: dict[str, Any] = field(default_factory=dict)
    #: side of the training crops in pixels; None = the dataset's image size
    crop_size: int | None = None
    num_workers: int = 0
    skip_bad: bool = False


@dataclass
class ClustersConfig:
    """Stage 1: where the cluster ids of the training images come from."""

    #: attributes | hierarchy | labels | file | none
    source: str = "attributes"
    #: attribute columns (None = the dataset's own auxiliary attributes)
    attributes: list[str] | None = None
    tags: list[str] = field(default_factory=list)
    top_k: int = 3
    top_tags: int | None = None
    #: hierarchy level (root = 0) and path rule for classes with several parents
    level: int = 12
    path_rule: str = "first"
    #: a clusters CSV (from ``clinfonce clusters``) with one 'cluster' per training image, in table order
    file: str | None = None


@dataclass
class ModelConfig:
    backbone: str = "small"
    #: 3x3 stride-1 stem without max-pool for ResNets on small (e.g. 32-px) images
    small_images: bool = True
    head_dim: int = 128
    #: channels of the first block of the small backbone (its features: 8 x width)
    width: int = 32
    #: channels-last memory layout: faster convolutions on CPUs and with mixed precision on GPUs
    channels_last: bool = True


@dataclass
class MethodConfig:
    #: clinfonce (cluster ids from stage 1) | simclr | supcon (downstream labels) | ce (cross-entropy)
    name: str = "clinfonce"
    temperature: float = 0.1
    #: multiply the loss by temperature / base_temperature (the authors' code: 0.07); None = off
    base_temperature: float | None = None
    views: int = 2


@dataclass
class OptimConfig:
    #: sgd (the paper: Nesterov momentum 0.95) | adamw (often steadier for short runs)
    name: str = "sgd"
    batch_size: int = 128
    lr: float = 0.03
    momentum: float = 0.95
    nesterov: bool = True
    weight_decay: float = 1e-4
    #: linear warm-up length in epochs (may be fractional), then cosine decay to 0
    warmup_epochs: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    #: run directory; None = runs/<dataset>-<method>-<time>
    out: str | None = None
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    checkpoint_every_n_epochs: int = 1
    #: also keep a checkpoint every this many optimizer steps (None: only per epoch)
    checkpoint_every_n_steps: int | None = None
    log_every_n_steps: int = 10
    progress_bar: bool = True
    #: a checkpoint path, "auto" (the run directory's last checkpoint if any) or None
    resume: str | None = None


@dataclass
class EvalConfig:
    #: run the linear probe and kNN after training
    enabled: bool = True
    probe_epochs: int = 100
    val_fraction: float = 0.1
    knn_k: list[int] = field(default_factory=lambda: [20, 200])
    batch_size: int = 256


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    clusters: ClustersConfig = field(default_factory=ClustersConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Check values across fields; raise :class:`InputError` naming the key. Returns self."""
        checks = [
            (self.method.name in METHODS, "method.name", f"one of {', '.join(METHODS)}"),
            (self.optim.name in OPTIMIZERS, "optim.name", f"one of {', '.join(OPTIMIZERS)}"),
            (
                self.clusters.source in CLUSTER_SOURCES,
                "clusters.source",
                f"one of {', '.join(CLUSTER_SOURCES)}",
            ),
            (self.clusters.path_rule in ("first", "shortest"), "clusters.path_rule", "'first' or 'shortest'"),
            (self.train.precision in PRECISIONS, "train.precision", f"one of {', '.join(PRECISIONS)}"),
            (self.method.temperature > 0, "method.temperature", "> 0"),
            (self.method.views >= 1, "method.views", ">= 1"),
            (self.model.width >= 1, "model.width", ">= 1"),
            (self.optim.batch_size >= 2, "optim.batch_size", ">= 2"),
            (self.optim.lr > 0, "optim.lr", "> 0"),
            (0 <= self.optim.momentum < 1, "optim.momentum", "in [0, 1)"),
            (self.optim.weight_decay >= 0, "optim.weight_decay", ">= 0"),
            (self.optim.warmup_epochs >= 0, "optim.warmup_epochs", ">= 0"),
            (self.train.epochs >= 1, "train.epochs", ">= 1"),
            (self.train.checkpoint_every_n_epochs >= 1, "train.checkpoint_every_n_epochs", ">= 1"),
            (
                self.train.checkpoint_every_n_steps is None or self.train.checkpoint_every_n_steps >= 1,
                "train.checkpoint_every_n_steps",
                ">= 1 or null",
            ),
            (self.clusters.top_k >= 1, "clusters.top_k", ">= 1"),
            (self.clusters.level >= 0, "clusters.level", ">= 0"),
            (0 < self.eval.val_fraction < 1, "eval.val_fraction", "in (0, 1)"),
            (all(k >= 1 for k in self.eval.knn_k), "eval.knn_k", "positive integers"),
            (self.data.num_workers >= 0, "data.num_workers", ">= 0"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise InputError(f"config: {key} must be {expected}, got {_lookup(self, key)!r}")
        if self.clusters.source == "file" and not self.clusters.file:
            raise InputError("config: clusters.source=file needs clusters.file (a clusters CSV)")
        if self.method.name == "clinfonce" and self.clusters.source == "none":
            raise InputError(
                "config: method clinfonce needs clusters: set clusters.source (or use method simclr)"
            )
        if self.method.name == "ce" and self.method.views != 1:
            self.method.views = 1  # cross-entropy trains on one view per image
        return self


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults), apply ``section.key=value`` overrides, validate.

    Override values are parsed as YAML (``optim.lr=0.1``, ``clusters.attributes=[a,b]``, ``train.out=null``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
        if not isinstance(data, dict):
            raise InputError(f"{path}: the config must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or "." not in key:
            raise InputError(f"override {item!r} must look like section.key=value, e.g. optim.lr=0.1")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InputError(f"override {item!r}: cannot parse the value") from error
        _set_nested(data, key.split("."), value)
    return config_from_dict(data)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a config from nested sections, e.g. ``{"optim": {"lr": 0.1}}``."""
    return _build(Config, data, "").validate()


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from clinfonce._io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def _set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise InputError(f"override of {'.'.join(keys)}: {key!r} is not a section")
    data[keys[-1]] = value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and value types."""
    if not isinstance(data, Mapping):
        raise InputError(f"config: {prefix or 'the top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; valid keys: {', '.join(names)}"
            raise InputError(f"config: unknown key '{prefix}{key}'{hint}")
    values = {}
    for name in names:
        if name not in data:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data[name] or {}, f"{prefix}{name}.")
        else:
            values[name] = _coerce(data[name], hint, f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a simple type hint (int, float, str, bool, list[...], dict, unions with None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except InputError as error:
                errors.append(error)
        raise errors[-1]
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"config: {key} must be a list, got {value!r}")
        return [_coerce(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise InputError(f"config: {key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"config: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config: {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"config: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"config: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint} for {key}")


def _lookup(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)
