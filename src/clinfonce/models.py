"""Backbones and projection heads. A backbone is the small CPU-friendly CNN, a ResNet with an optional
small-image stem (``resnet18``, ``resnet50``), any timm model (``timm/<name>``) or any torchvision
classification model (``torchvision/<name>``); models with a fixed input size (ViTs) need
``data.crop_size`` to match it. Weights are never downloaded: a network starts from random initialisation,
or from a local weights file (:func:`load_backbone_weights`)."""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from clinfonce.errors import InputError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from clinfonce.config import ModelConfig

BACKBONES = ("small", "resnet18", "resnet50")
#: ``model.*`` settings that only some backbones read (:func:`build_backbone`): the rest ignore them
_SETTING_USERS = {"width": ("small",), "small_images": ("resnet18", "resnet50")}


def ignored_settings(backbone: str) -> set[str]:
    """The ``model`` settings ``backbone`` does not read (``width`` but for the small CNN, ``small_images``
    but for the named ResNets): a difference in them makes no different run."""
    return {setting for setting, users in _SETTING_USERS.items() if backbone not in users}


def build_backbone(name: str, small_images: bool = False, width: int = 32) -> tuple[nn.Module, int]:
    """A feature extractor ``[B, 3, H, W] -> [B, F]`` and its feature size F, randomly initialised.

    Args:
        name: ``"small"`` (a 4-block CNN with ``8 * width`` features, for CPU runs and tests),
            ``"resnet18"`` (512) or ``"resnet50"`` (2048), ``"timm/<model>"`` (any timm model, its
            classifier removed) or ``"torchvision/<model>"`` (any torchvision classification model, its last
            linear layer removed).
        small_images: for ``resnet18`` / ``resnet50``, replace the ImageNet stem (7x7 stride-2 conv +
            max-pool) with a 3x3 stride-1 conv and no max-pool, the usual choice for 32-px images (models
            taken by name keep their own stem).
        width: channels of the first block of the small CNN (ignored by the others).
    """
    if name == "small":
        net = SmallCNN(width)
        return net, net.feature_dim
    if name.startswith("timm/"):
        return _timm_backbone(name[len("timm/") :])
    if name.startswith("torchvision/"):
        return _torchvision_backbone(name[len("torchvision/") :])
    if name not in BACKBONES:
        raise InputError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, timm/<model> or torchvision/<model>"
        )
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if small_images:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net, feature_dim


def _timm_backbone(model: str) -> tuple[nn.Module, int]:
    try:
        import timm
    except ModuleNotFoundError:
        raise InputError(f"backbone timm/{model} needs timm: pip install timm") from None
    if not timm.is_model(model):
        raise InputError(f"timm has no model {model!r} (timm.list_models() lists them)")
    net = timm.create_model(model, pretrained=False, num_classes=0)  # pooled features, no classifier
    return net, int(net.num_features)


def _torchvision_backbone(model: str) -> tuple[nn.Module, int]:
    import torchvision

    if model not in torchvision.models.list_models(module=torchvision.models):
        raise InputError(
            f"torchvision has no classification model {model!r} (torchvision.models.list_models())"
        )
    net = torchvision.models.get_model(model, weights=None)
    last = [(name, module) for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not last:
        raise InputError(f"torchvision/{model}: no final linear layer to remove")
    name, linear = last[-1]
    parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
    setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return net, int(linear.in_features)


def load_starting_weights(backbone: nn.Module, model: ModelConfig) -> str:
    """Load what ``model`` says training starts from into ``backbone``: the ``pretrained`` weights, the
    ``weights`` file, or nothing (random initialisation); returns :func:`starting_weights`."""
    if model.pretrained is not None:
        from clinfonce.pretrained import pretrained

        backbone.load_state_dict(pretrained(model.pretrained).state_dict())
    elif model.weights is not None:
        left_out = load_backbone_weights(backbone, model.weights)
        if left_out:
            log.info("%d key(s) of %s not used: %s", len(left_out), model.weights, ", ".join(left_out[:4]))
    return starting_weights(model)


def starting_weights(model: ModelConfig) -> str:
    """Where ``model``'s training starts from, in words (recorded in encoder files and reports)."""
    if model.pretrained is not None:
        from clinfonce.pretrained import pretrained

        return pretrained(model.pretrained).provenance()
    if model.weights is not None:
        return f"model.weights {Path(model.weights).absolute()}"
    return "random initialisation"


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's stages from the input on (what ``model.freeze_stages`` counts): the stem, then each
    stage of blocks; :class:`InputError` for a backbone whose stages are not known."""
    if hasattr(backbone, "conv_stem") and hasattr(backbone, "blocks"):  # timm EfficientNet / MobileNet
        return [nn.ModuleList([backbone.conv_stem, backbone.bn1]), *backbone.blocks]
    if all(hasattr(backbone, name) for name in ("conv1", "bn1", "layer1", "layer4")):  # ResNets
        stem = nn.ModuleList([backbone.conv1, backbone.bn1])
        return [stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    if isinstance(backbone, SmallCNN):
        layers = list(backbone.features)
        return [nn.Sequential(*layers[i : i + 3]) for i in range(0, len(layers), 3)]
    raise InputError(f"model.freeze_stages: the stages of {type(backbone).__name__} are not known")


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a local weights file into a backbone (for fine-tuning from it); returns the file's keys that
    were left out (a classifier the backbone does not have).

    The file is a state dict, or a checkpoint holding one under ``state_dict`` or ``model`` (timm and
    torchvision training scripts), saved with ``torch.save`` (read with ``weights_only=True``) or as
    ``.safetensors``. A ``module.`` prefix (DataParallel / DDP) is removed.

    Raises:
        InputError: the file is missing or unreadable, or it lacks weights of the backbone, or a weight has
            another shape; the message names the file and the first such key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model.weights: no such file {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any reader failure means the file is not usable weights
        raise InputError(f"{path}: cannot read weights ({' '.join(str(error).split())[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise InputError(
            f"{path}: lacks {len(missing)} weight(s) of the backbone, e.g. {missing[0]!r}: weights of another model?"
        )
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise InputError(
            f"{path}: weight {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, the backbone's is "
            f"{tuple(own[wrong[0]].shape)}"
        )
    backbone.load_state_dict({k: state[k] for k in own})
    return sorted(k for k in state if k not in own)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (``width``, 2x, 4x, 8x channels; the last three stride 2) and global
    average pooling: ``[B, 3, H, W] -> [B, 8 * width]``. With width 32, about 0.4 M parameters."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise InputError(f"the small backbone's width must be >= 1, got {width}")
        channels = [3, width, 2 * width, 4 * width, 8 * width]
        self.feature_dim = channels[-1]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(channels)):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


class ProjectionHead(nn.Module):
    """MLP ``in_dim -> hidden_dim -> out_dim`` with BatchNorm and ReLU between (the paper: 2048 -> 2048 -> 128
    for ResNet-50). Its output is L2-normalised by the loss, not here."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Network(nn.Module):
    """Backbone + projection head. ``forward`` gives projections; ``features`` gives the backbone output
    (what evaluation uses, *before* the head)."""

    def __init__(
        self, backbone: str = "resnet18", small_images: bool = False, head_dim: int = 128, width: int = 32
    ) -> None:
        super().__init__()
        self.backbone, self.feature_dim = build_backbone(backbone, small_images, width)
        self.head_dim = head_dim
        self.head = ProjectionHead(self.feature_dim, self.feature_dim, head_dim)

    @classmethod
    def of(cls, model: ModelConfig) -> Network:
        """The network a config's ``model`` section describes, randomly initialised."""
        return cls(model.backbone, model.small_images, model.head_dim, model.width)

    def freeze(self, stages: int) -> None:
        """Keep the first ``stages`` stages of the backbone (:func:`backbone_stages`) fixed: no gradient,
        and batch norm keeps its statistics (those stages stay in eval mode)."""
        known = backbone_stages(self.backbone) if stages else []
        if stages > len(known):
            raise InputError(f"model.freeze_stages is {stages}, but the backbone has {len(known)} stages")
        self._frozen = known[:stages]  # a plain list: not registered again (the state dict stays as it is)
        for stage in self._frozen:
            stage.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Network:
        super().train(mode)
        for stage in getattr(self, "_frozen", ()):
            stage.eval()
        return self

    def output_dim(self, projection: bool = False) -> int:
        """Size of :meth:`features` (``F``), or with ``projection`` of :meth:`forward` (``head_dim``)."""
        return self.head_dim if projection else self.feature_dim

    def features(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, F]``."""
        return self.backbone(images)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, head_dim]`` (not normalised)."""
        return self.head(self.backbone(images))
