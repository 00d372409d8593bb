"""Backbones and heads: feature sizes, the small-image stem, features taken before the head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clinfonce.errors import InputError
from clinfonce.models import Network, SmallCNN, build_backbone


@pytest.mark.parametrize("width", [4, 16, 32])
def test_small_cnn_width_sets_channels_and_feature_size(width: int) -> None:
    net = SmallCNN(width)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [width, 2 * width, 4 * width, 8 * width]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 8 * width) and net.feature_dim == 8 * width


def test_small_cnn_rejects_bad_width() -> None:
    with pytest.raises(InputError, match="width"):
        SmallCNN(0)


def test_resnet_small_image_stem_keeps_resolution() -> None:
    imagenet, dim = build_backbone("resnet18", small_images=False)
    small, _ = build_backbone("resnet18", small_images=True)
    assert dim == 512
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity) and not isinstance(imagenet.maxpool, nn.Identity)
    # the stem alone: 32 px stays 32 px with the small stem, and is quartered by the ImageNet stem
    x = torch.randn(1, 3, 32, 32)
    assert small.maxpool(small.conv1(x)).shape[-1] == 32
    assert imagenet.maxpool(imagenet.conv1(x)).shape[-1] == 8


def test_resnet50_head_is_the_papers_2048_2048_128() -> None:
    encoder = Network("resnet50", small_images=True, head_dim=128)
    linears = [m for m in encoder.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 2048), (2048, 128)]


def test_encoder_features_come_before_the_head() -> None:
    encoder = Network("small", head_dim=24, width=8).eval()
    images = torch.randn(3, 3, 32, 32)
    features = encoder.features(images)
    assert features.shape == (3, 64)
    torch.testing.assert_close(encoder(images), encoder.head(features))
    assert encoder(images).shape == (3, 24)


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(InputError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")
