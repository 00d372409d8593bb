"""The run configuration: one typed object, read from YAML, overridden by ``section.key=value`` arguments.

The schema is the dataclasses below; values are merged and type-checked by OmegaConf structured configs
(through :func:`clinfonce.typed.from_mapping`), which converts what YAML leaves as strings (``1e-3``),
rejects unknown keys with a "did you mean", and names the key at fault. OmegaConf was chosen over
jsonargparse because the config is a file plus dotted overrides, not a command line: OmegaConf does exactly
that merge over plain dataclasses, so the schema stays ordinary Python.

A config file is a path or the name of a config bundled with the package (``shapes``, ``cub200``, ...:
:func:`bundled_configs`). The dataset's own options (``data.options``) are checked against that dataset's
typed options (:func:`clinfonce.data.registry.dataset_options`) before any file is opened, and the resolved
config holds them with their defaults filled in. A run writes its resolved config once, to
``config.yaml`` in the run directory (:class:`clinfonce.run.RunDir`), and reads it back typed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from clinfonce import configs
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.errors import InputError
from clinfonce.methods import METHODS
from clinfonce.typed import from_mapping, to_mapping

if TYPE_CHECKING:
    from clinfonce.data.dataset import ImageDataset

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
#: how optim.lr follows the global batch (optim.batch_size x processes)
LR_SCALINGS = ("none", "linear", "sqrt")
#: Where the contrastive positives of clinfonce come from (method.positives).
POSITIVES = ("clusters", "tags")


@dataclass
class DataConfig:
    """Which dataset and how to read it."""

    name: str = "shapes"
    #: the dataset's options (root directories, image size, seeds, ...): `clinfonce data options NAME`
    options: dict[str, Any] = field(default_factory=dict)
    #: side of the training crops in pixels; None = the dataset's image size
    crop_size: int | None = None
    num_workers: int = 0
    #: leave unreadable images out (listed in the run's skipped.csv) instead of stopping at the first
    skip_bad: bool = False

    def load(self) -> ImageDataset:
        """The dataset this section names, read with its options."""
        from clinfonce.data.registry import load_dataset

        return load_dataset(self.name, self.options, skip_bad=self.skip_bad)

    def check_describes(self, dataset: ImageDataset) -> None:
        """:class:`InputError` unless ``dataset`` is what this section loads (so a run's ``config.yaml``
        describes the data it trained on); the message names the first key that differs."""
        origin = dataset.origin
        if origin is None:
            raise InputError(
                f"dataset {dataset.name!r} was built by hand, so no config can describe it: load it with "
                "config.data.load() or clinfonce.data.registry.load_dataset(name, options)"
            )
        given = {"data.name": origin.name, "data.skip_bad": origin.skip_bad}
        given |= {f"data.options.{k}": v for k, v in origin.options.items()}
        wanted = {"data.name": self.name, "data.skip_bad": self.skip_bad}
        wanted |= {f"data.options.{k}": v for k, v in self.options.items()}
        for key in sorted(set(given) | set(wanted), key=lambda k: (k != "data.name", k)):
            if given.get(key) != wanted.get(key):
                raise InputError(
                    f"the dataset given differs from the config's data section: {key} is "
                    f"{given.get(key)!r} in the dataset, {wanted.get(key)!r} in the config"
                )


@dataclass
class ModelConfig:
    #: small | resnet18 | resnet50 | timm/<model> | torchvision/<model> (nothing is downloaded)
    backbone: str = "small"
    #: a local weights file to start the backbone from (a state dict or a timm/torchvision checkpoint,
    #: .pt/.pth/.bin or .safetensors); the whole network is then trained (fine-tuned). None: random init
    weights: str | None = None
    #: installed pretrained weights to start from (clinfonce.pretrained: efficientnet_lite0); sets
    #: model.backbone and the input normalisation to the weights' own. None: random init (or model.weights)
    pretrained: str | None = None
    #: leading stages of the backbone kept frozen while training (weights fixed, batch norm statistics
    #: too): 0 trains all; 1 the stem; 2 the stem and the first block stage; ...
    freeze_stages: int = 0
    #: 3x3 stride-1 stem without max-pool for ResNets on small (e.g. 32-px) images
    small_images: bool = True
    head_dim: int = 128
    #: channels of the first block of the small backbone (its features: 8 x width)
    width: int = 32
    #: channels-last memory layout: faster convolutions on CPUs and with mixed precision on GPUs
    channels_last: bool = True


@dataclass
class AugmentConfig:
    """The training views' random augmentation (evaluation uses none: resize and normalise only). On
    grayscale data saturation, hue and grayscale do nothing, so only brightness and contrast jitter."""

    #: area fraction of the random crop, [min, max]
    crop_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    #: aspect ratio (width / height) of the random crop, [min, max]
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    flip_p: float = 0.5
    #: colour-jitter strengths [brightness, contrast, saturation, hue] (hue <= 0.5)
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])
    jitter_p: float = 0.8
    gray_p: float = 0.2
    #: probability of a Gaussian blur (0: off)
    blur_p: float = 0.0
    #: blur standard deviation in pixels, [min, max]
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])

    def build(self, image_size: int, mean, std, n_views: int):
        """The batched augmentation these settings describe (:class:`~clinfonce.data.augment.ContrastiveAugment`)."""
        from clinfonce.data.augment import ContrastiveAugment

        return ContrastiveAugment(
            image_size,
            mean,
            std,
            n_views=n_views,
            crop_scale=tuple(self.crop_scale),
            crop_ratio=tuple(self.crop_ratio),
            flip_p=self.flip_p,
            jitter=tuple(self.jitter),
            jitter_p=self.jitter_p,
            gray_p=self.gray_p,
            blur_p=self.blur_p,
            blur_sigma=tuple(self.blur_sigma),
        )


@dataclass
class MethodConfig:
    #: a method of clinfonce.methods.METHODS: clinfonce (stage-1 clusters) | simclr | supcon (labels) |
    #: ce (labels) | the weakly-supervised baselines cluster_ce, attr_bce, attr_infonce
    name: str = "clinfonce"
    temperature: float = 0.1
    #: multiply the loss by temperature / base_temperature (the authors' code: 0.07); None = off
    base_temperature: float | None = None
    #: augmented views per image for the contrastive methods (the prediction methods train on one)
    views: int = 2
    #: clinfonce only: add InfoNCE (every image its own cluster) on a second projection head, weighted 1:1
    #: with Cl-InfoNCE on the first (the authors' K-means variant on ImageNet-100)
    joint_infonce: bool = False
    #: clinfonce only: clusters (positives: the images of one stage-1 cluster) | tags (soft positives: every
    #: pair of images weighted by the cosine of their tag vectors, those of clusters.tags / attributes)
    positives: str = "clusters"

    @property
    def n_views(self) -> int:
        """Views per image this method trains on."""
        return self.views if METHODS[self.name].contrastive else 1


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
    #: none: the learning rate is optim.lr whatever the number of processes; linear: optim.lr x global batch /
    #: lr_reference_batch (SimCLR's rule); sqrt: optim.lr x sqrt(global batch / lr_reference_batch)
    lr_scaling: str = "none"
    lr_reference_batch: int = 256


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    #: run directory; None = runs/<dataset>-<method>-<time>
    out: str | None = None
    #: auto: bf16-mixed when training on CUDA GPUs that support bfloat16, else 32-true; or any of Lightning's
    precision: str = "auto"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    #: batch norm statistics over the global batch of every process (GlobalBatchNorm, on any device), so
    #: several processes train as one; null (default): when several processes train; false: each process
    #: normalises its own share of the batch (DDP's default)
    sync_batchnorm: bool | None = None
    checkpoint_every_n_epochs: int = 1
    #: also keep a checkpoint every this many optimizer steps (None: only per epoch)
    checkpoint_every_n_steps: int | None = None
    #: keep the newest this many checkpoints of each schedule (plus last.ckpt); older ones are deleted
    keep_checkpoints: int = 3
    #: optimizer steps with a non-finite loss or gradient that may be skipped (counted in the report)
    #: before training stops; 0: stop at the first
    max_bad_steps: int = 0
    log_every_n_steps: int = 10
    #: Lightning's progress bar; None: when the output is a terminal (else one line per epoch)
    progress_bar: bool | None = None
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
    #: during training, kNN accuracy on the validation split every this many epochs (logged to the CSV log
    #: and TensorBoard as val/knn{k}_top1, k = the first of knn_k); None: off. Needs a validation split.
    knn_every: int | None = None


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    clusters: ClusterSpec = field(default_factory=ClusterSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (what ``config.yaml`` holds)."""
        return to_mapping(self)


def bundled_configs() -> list[str]:
    """Names of the configs shipped inside the package (one per dataset)."""
    return configs.names()


def load_config(
    config: str | Path | Mapping[str, Any] | Config | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Config:
    """The resolved config: a file or bundled config (or a mapping, or the defaults), then ``overrides``.

    Args:
        config: a YAML path, the name of a bundled config (``"shapes"``), a nested mapping, a
            :class:`Config`, or None for the defaults.
        overrides: ``["optim.lr=0.1", ...]`` (values are YAML: ``clusters.attributes=[a,b]``,
            ``train.out=null``; lists may also be written ``a,b``), or a mapping ``{"optim.lr": 0.1}``.

    Raises:
        InputError: the file is missing or not YAML, a key is unknown, a value has the wrong type or range,
            or the dataset's options are wrong. The message names the key.
    """
    data = _read(config)
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in items:
        _set_nested(data, key, value)
    return resolve(from_mapping(Config, data, "config"))


def resolve(config: Config) -> Config:
    """Check ``config`` across fields and fill in the dataset's option defaults; returns a new config.

    Opens no file: the dataset options are only type-checked here (the loader reports missing folders).
    """
    from clinfonce.data.registry import dataset_options

    checks = [
        (config.method.name in METHODS, "method.name", f"one of {', '.join(METHODS)}"),
        (config.optim.name in OPTIMIZERS, "optim.name", f"one of {', '.join(OPTIMIZERS)}"),
        (config.train.precision in PRECISIONS, "train.precision", f"one of {', '.join(PRECISIONS)}"),
        (config.method.temperature > 0, "method.temperature", "> 0"),
        (config.method.views >= 1, "method.views", ">= 1"),
        (config.model.width >= 1, "model.width", ">= 1"),
        (config.optim.batch_size >= 2, "optim.batch_size", ">= 2"),
        (config.optim.lr > 0, "optim.lr", "> 0"),
        (config.optim.lr_scaling in LR_SCALINGS, "optim.lr_scaling", f"one of {', '.join(LR_SCALINGS)}"),
        (config.optim.lr_reference_batch >= 1, "optim.lr_reference_batch", ">= 1"),
        (0 <= config.optim.momentum < 1, "optim.momentum", "in [0, 1)"),
        (config.optim.weight_decay >= 0, "optim.weight_decay", ">= 0"),
        (config.optim.warmup_epochs >= 0, "optim.warmup_epochs", ">= 0"),
        (config.train.epochs >= 1, "train.epochs", ">= 1"),
        (config.train.checkpoint_every_n_epochs >= 1, "train.checkpoint_every_n_epochs", ">= 1"),
        (config.train.keep_checkpoints >= 1, "train.keep_checkpoints", ">= 1"),
        (config.train.max_bad_steps >= 0, "train.max_bad_steps", ">= 0"),
        (
            config.train.checkpoint_every_n_steps is None or config.train.checkpoint_every_n_steps >= 1,
            "train.checkpoint_every_n_steps",
            ">= 1 or null",
        ),
        (0 < config.eval.val_fraction < 1, "eval.val_fraction", "in (0, 1)"),
        (all(k >= 1 for k in config.eval.knn_k), "eval.knn_k", "positive integers"),
        (config.data.num_workers >= 0, "data.num_workers", ">= 0"),
        (config.data.crop_size is None or config.data.crop_size >= 1, "data.crop_size", ">= 1 or null"),
        (config.model.head_dim >= 1, "model.head_dim", ">= 1"),
        (config.model.freeze_stages >= 0, "model.freeze_stages", ">= 0"),
        (
            config.method.base_temperature is None or config.method.base_temperature > 0,
            "method.base_temperature",
            "> 0 or null",
        ),
        (config.train.num_nodes >= 1, "train.num_nodes", ">= 1"),
        (config.train.log_every_n_steps >= 1, "train.log_every_n_steps", ">= 1"),
        (config.eval.batch_size >= 1, "eval.batch_size", ">= 1"),
        (config.eval.probe_epochs >= 1, "eval.probe_epochs", ">= 1"),
        (len(config.eval.knn_k) >= 1, "eval.knn_k", "a non-empty list"),
        (config.eval.knn_every is None or config.eval.knn_every >= 1, "eval.knn_every", ">= 1 or null"),
        *_augment_checks(config.augment),
    ]
    finite = [
        (f"{section}.{f.name}", getattr(getattr(config, section), f.name))
        for section in ("method", "optim", "eval", "augment")
        for f in dataclasses.fields(getattr(config, section))
    ]
    checks += [(math.isfinite(v), k, "a finite number") for k, v in finite if isinstance(v, float)]
    for ok, key, expected in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            raise InputError(f"config: {key} must be {expected}, got {value!r}")
    try:
        config.clusters.check()
    except InputError as error:
        raise InputError(f"config: {error}") from None
    _check_method_inputs(config)
    options = dataset_options(config.data.name, config.data.options)
    data = dataclasses.replace(config.data, options=to_mapping(options))
    return dataclasses.replace(config, data=data, model=_with_pretrained(config.model))


def _with_pretrained(model: ModelConfig) -> ModelConfig:
    """``model`` with ``backbone`` set to what ``pretrained`` names (the default backbone is replaced; any
    other must be the same); :class:`InputError` for an unknown name or with ``weights`` too."""
    if model.pretrained is None:
        return model
    from clinfonce.pretrained import pretrained

    entry = pretrained(model.pretrained)
    if model.weights is not None:
        raise InputError("config: model.pretrained and model.weights both say where to start from: give one")
    if model.backbone not in (ModelConfig.backbone, entry.backbone):
        raise InputError(
            f"config: model.pretrained={entry.name} is the backbone {entry.backbone}, but model.backbone is "
            f"{model.backbone}: leave model.backbone out, or set it to {entry.backbone}"
        )
    return dataclasses.replace(model, backbone=entry.backbone)


def _augment_checks(augment: AugmentConfig) -> list[tuple[bool, str, str]]:
    """Range checks of the ``augment`` section (see :func:`resolve`)."""

    def interval(values: list[float]) -> bool:
        return len(values) == 2 and all(math.isfinite(v) for v in values) and 0 < values[0] <= values[1]

    probabilities = [
        (0 <= getattr(augment, name) <= 1, f"augment.{name}", "in [0, 1]")
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p")
    ]
    return [
        *probabilities,
        (
            interval(augment.crop_scale) and augment.crop_scale[1] <= 1,
            "augment.crop_scale",
            "[min, max] with 0 < min <= max <= 1",
        ),
        (interval(augment.crop_ratio), "augment.crop_ratio", "[min, max] with 0 < min <= max"),
        (
            len(augment.jitter) == 4 and min(augment.jitter) >= 0 and augment.jitter[3] <= 0.5,
            "augment.jitter",
            "4 strengths [brightness, contrast, saturation, hue] >= 0 with hue <= 0.5",
        ),
        (interval(augment.blur_sigma), "augment.blur_sigma", "[min, max] with 0 < min <= max"),
    ]


def _check_method_inputs(config: Config) -> None:
    """:class:`InputError` when the method and the ``clusters`` section do not fit together."""
    method, source = METHODS[config.method.name], config.clusters.source
    name = method.name
    if method.needs_stage1 and source == "none":
        raise InputError(f"config: method {name} needs clusters: set clusters.source (or use method simclr)")
    if method.uses == "attributes" and source != "attributes":
        raise InputError(
            f"config: method {name} learns the attributes behind attribute clusters: it needs "
            f"clusters.source=attributes, got {source}"
        )
    if method.fixed_clusters and config.clusters.reclusters:
        raise InputError(
            f"config: method {name} needs fixed clusters; K-means on the model's own features changes the "
            "ids every re-clustering (give clusters.features, or use method clinfonce)"
        )
    if config.method.joint_infonce and not method.joint_infonce:
        allowed = ", ".join(m.name for m in METHODS.values() if m.joint_infonce)
        raise InputError(f"config: method.joint_infonce is for method {allowed}, not {name}")
    positives = config.method.positives
    if positives not in POSITIVES:
        raise InputError(f"config: method.positives must be {' or '.join(POSITIVES)}, got {positives!r}")
    if positives == "tags":
        if not method.soft_positives:
            allowed = ", ".join(m.name for m in METHODS.values() if m.soft_positives)
            raise InputError(f"config: method.positives=tags is for method {allowed}, not {name}")
        if source != "attributes":
            raise InputError(
                "config: method.positives=tags takes its tags from clusters.tags / clusters.attributes "
                f"(clusters.source=attributes), got clusters.source={source}"
            )


def hyperparameters(config: Config) -> dict[str, Any]:
    """The config as ``{"optim.lr": 0.03, ...}`` with scalar values (lists and the dataset's options as
    text): what TensorBoard's hyper-parameter view can show."""
    flat: dict[str, Any] = {}
    for section, values in config.to_dict().items():
        for key, value in values.items():
            scalar = value is None or isinstance(value, (bool, int, float, str))
            flat[f"{section}.{key}"] = value if scalar else str(value)
    return flat


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from clinfonce._io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)


def config_yaml(config: Config) -> str:
    """The config as YAML text (what ``--print-config`` shows and ``config.yaml`` holds)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _read(config: str | Path | Mapping[str, Any] | Config | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, Mapping):
        return _plain(config)
    path = Path(config)
    if not path.is_file():
        bundled = None if path.suffix else configs.text(str(config))
        if bundled is None:
            names = ", ".join(bundled_configs())
            raise InputError(f"{path}: no such config file (bundled configs: {names})")
        return _parse_yaml(bundled, f"bundled config {config!r}")
    return _parse_yaml(path.read_text(encoding="utf-8"), str(path))


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: the config must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``"section.key=value"`` -> ``("section.key", value)``, the value read as YAML."""
    key, sep, text = item.partition("=")
    if not sep or "." not in key:
        hint = " (a list flag takes one comma-separated value, e.g. --seeds 0,1,2)" if not sep else ""
        raise InputError(f"override {item!r} must look like section.key=value, e.g. optim.lr=0.1{hint}")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"override {item!r}: cannot parse the value") from None


def _set_nested(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, name = key.split(".")
    for section in sections:
        if data.get(section) is None:
            data[section] = {}
        data = data[section]
        if not isinstance(data, dict):
            raise InputError(f"override of {key}: {section!r} is not a section")
    data[name] = value


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}
