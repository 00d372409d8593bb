"""The `augment` section: what it builds, the blur against torchvision's, its checks, and that the default
settings draw exactly the views they drew before the section existed."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from clinfonce.config import load_config
from clinfonce.data.augment import ContrastiveAugment, gaussian_blur
from clinfonce.errors import InputError


def test_blur_matches_torchvision_per_image() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 20, 24, generator=generator)
    sigmas = torch.tensor([0.5, 1.0, 1.7])
    ours = gaussian_blur(images, sigmas, kernel_size=9)
    for i, sigma in enumerate(sigmas.tolist()):
        expected = TF.gaussian_blur(images[i], kernel_size=[9, 9], sigma=[sigma, sigma])
        torch.testing.assert_close(ours[i], expected, rtol=1e-5, atol=1e-6)


def test_the_section_builds_the_augmentation() -> None:
    config = load_config(
        None, {"augment.crop_scale": [0.2, 0.9], "augment.flip_p": 0.0, "augment.blur_p": 0.5}
    )
    augment = config.augment.build(32, [0.5] * 3, [0.25] * 3, n_views=3)
    assert augment.crop_scale == (0.2, 0.9) and augment.flip_p == 0.0 and augment.blur_p == 0.5
    views = augment(
        torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8), generator=torch.Generator().manual_seed(1)
    )
    assert views.shape == (4, 3, 3, 32, 32) and torch.isfinite(views).all()


def test_defaults_draw_the_views_they_drew_before() -> None:
    """The default section equals the augmentation's own defaults, and with blur off no extra random number
    is drawn: seeded runs keep their numbers. Reference: the views ContrastiveAugment drew at ff160ef, before
    the augment section and the blur existed (recorded by running that commit's code on the same input)."""
    images = torch.randint(
        0, 256, (5, 3, 36, 36), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    built = load_config(None).augment.build(32, [0.5] * 3, [0.25] * 3, n_views=2)
    plain = ContrastiveAugment(32, [0.5] * 3, [0.25] * 3, n_views=2)
    a = built(images, generator=torch.Generator().manual_seed(7))
    b = plain(images, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.double().sum().item() == pytest.approx(-2597.8335176706314, rel=1e-9)
    assert a.double().abs().sum().item() == pytest.approx(19820.973143219948, rel=1e-9)
    before = [
        [-0.19067084789276123, -0.29955732822418213, -1.6343114376068115],
        [-1.3762414455413818, -0.6651936769485474, 0.09757399559020996],
        [-1.8857835531234741, -2.0, -2.0],
    ]
    torch.testing.assert_close(a[0, 0, :, 0, :3], torch.tensor(before), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.crop_scale=[0.5, 1.5]", "augment.crop_scale must be"),
        ("augment.jitter=[0.4, 0.4, 0.4]", "augment.jitter must be"),
        ("augment.jitter=[0.4, 0.4, 0.4, 0.7]", "augment.jitter must be"),
        ("augment.gray_p=1.2", "augment.gray_p must be in"),
        ("augment.blur_sigma=[2, 1]", "augment.blur_sigma must be"),
        ("augment.flipp=0.1", "did you mean 'augment.flip_p'"),
    ],
)
def test_bad_augment_settings_name_their_key(override, message) -> None:
    with pytest.raises(InputError, match=message):
        load_config(None, [override])
