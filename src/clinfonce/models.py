"""Backbones (torchvision ResNets, a small CPU-friendly CNN) and projection heads. Weights are never
downloaded: every network starts from random initialisation."""

from __future__ import annotations

import itertools

import torchvision
from torch import Tensor, nn

from clinfonce.errors import InputError

BACKBONES = ("small", "resnet18", "resnet50")
#: the format tag of the ``encoder.pt`` files a run writes
ENCODER_FORMAT = "clinfonce-encoder-v2"


def build_backbone(name: str, small_images: bool = False, width: int = 32) -> tuple[nn.Module, int]:
    """A feature extractor ``[B, 3, H, W] -> [B, F]`` and its feature size F.

    Args:
        name: ``"small"`` (a 4-block CNN with ``8 * width`` features, for CPU runs and tests),
            ``"resnet18"`` (512) or ``"resnet50"`` (2048).
        small_images: for ResNets, replace the ImageNet stem (7x7 stride-2 conv + max-pool) with a 3x3
            stride-1 conv and no max-pool, the usual choice for 32-px images.
        width: channels of the first block of the small CNN (ignored by ResNets).
    """
    if name == "small":
        net = SmallCNN(width)
        return net, net.feature_dim
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    net = getattr(torchvision.models, name)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if small_images:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net, feature_dim


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


class Encoder(nn.Module):
    """Backbone + projection head. ``forward`` gives projections; ``features`` gives the backbone output
    (what evaluation uses, *before* the head)."""

    def __init__(
        self, backbone: str = "resnet18", small_images: bool = False, head_dim: int = 128, width: int = 32
    ) -> None:
        super().__init__()
        self.backbone, self.feature_dim = build_backbone(backbone, small_images, width)
        self.head = ProjectionHead(self.feature_dim, self.feature_dim, head_dim)

    def features(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, F]``."""
        return self.backbone(images)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, head_dim]`` (not normalised)."""
        return self.head(self.backbone(images))
