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


#: The random choices ContrastiveAugment drew at ff160ef (before the augment section and the blur existed)
#: for 5 images of 36 x 36 px, 2 views each, from a generator seeded with 7: recorded by running that
#: commit's ``sample`` (the draws are integer-based; only the crop boxes pass through exp and sqrt).
BEFORE_FLIP = [[0, 0], [1, 1], [0, 0], [0, 1], [1, 0]]
BEFORE_JITTER = [[1, 1], [1, 1], [1, 1], [0, 0], [1, 1]]
BEFORE_GRAY = [[0, 1], [0, 0], [0, 0], [1, 1], [0, 0]]
BEFORE_BOXES = [
    [[5.2538, 1.7513, 28.0301, 33.334], [2.0953, 5.6535, 25.882, 27.0224]],
    [[3.9839, 5.7269, 31.3402, 25.6052], [4.8855, 2.2886, 25.0235, 29.63]],
    [[6.7451, 0.0, 29.0457, 36.0], [1.6236, 0.2849, 33.8557, 35.59]],
    [[4.2095, 4.0327, 31.2148, 29.5845], [5.2598, 0.0, 29.855, 36.0]],
    [[2.7154, 4.7111, 32.349, 31.0886], [3.5768, 0.9689, 26.4415, 31.0378]],
]
BEFORE_BRIGHTNESS = [[0.78652, 0.673102], [1.195786, 0.771756], [0.906111, 0.889969], [0.71758, 1.181146],
                     [1.29119, 1.083971]]  # fmt: skip
BEFORE_HUE = [[0.011501, -0.005942], [0.01101, 0.057553], [0.007046, -0.02475], [-0.005375, -0.097497],
              [0.046192, -0.046999]]  # fmt: skip


def test_defaults_draw_the_views_they_drew_before() -> None:
    """The default section builds the augmentation's own defaults, and with blur off no extra random number
    is drawn: seeded runs keep their random choices. Pinned are the choices themselves (what is discrete),
    not the pixels: float kernels differ between CPU models in the last bits, so the views' sums do too
    (-2597.8335 on an AMD EPYC, -2597.8333 on an Intel Xeon, for the same draws)."""
    images = torch.randint(
        0, 256, (5, 3, 36, 36), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    built = load_config(None).augment.build(32, [0.5] * 3, [0.25] * 3, n_views=2)
    plain = ContrastiveAugment(32, [0.5] * 3, [0.25] * 3, n_views=2)
    params = plain.sample(5, 36, 36, generator=torch.Generator().manual_seed(7))
    assert params.flip.int().tolist() == BEFORE_FLIP
    assert params.jitter.int().tolist() == BEFORE_JITTER
    assert params.gray.int().tolist() == BEFORE_GRAY
    assert not params.blur.any()
    # recorded to 4 decimals (pixels) and 6 (factors): far above a last-bit difference of exp or sqrt
    torch.testing.assert_close(params.boxes, torch.tensor(BEFORE_BOXES), rtol=0, atol=1e-4)
    torch.testing.assert_close(params.brightness, torch.tensor(BEFORE_BRIGHTNESS), rtol=0, atol=1e-6)
    torch.testing.assert_close(params.hue, torch.tensor(BEFORE_HUE), rtol=0, atol=1e-6)
    # the configured augmentation draws exactly these choices and nothing more, and applies them alike
    views = built(images, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(views, plain.apply(images, params), rtol=0, atol=0)


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
