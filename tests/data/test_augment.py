"""Batched augmentation against independent references: torchvision.transforms.v2.functional per image
(colour ops, grayscale, resized_crop, resize, normalize), Python's colorsys, plain tensor slicing and flips,
and sampling statistics."""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from clinfonce.data.augment import (
    ContrastiveAugment,
    EvalTransform,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize,
    crop_theta,
    hsv_to_rgb,
    rgb_to_grayscale,
    rgb_to_hsv,
    sample_crop_boxes,
)

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def random_images(n: int, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """float [n, 3, h, w] in [0, 1]; half the images are coarsely quantised so that channel ties (gray
    pixels, two equal maxima), pure black and pure white pixels occur often."""
    g = torch.Generator().manual_seed(seed)
    smooth = torch.rand(n - n // 2, 3, h, w, generator=g)
    coarse = torch.randint(0, 4, (n // 2, 3, h, w), generator=g).float() / 3
    return torch.cat([smooth, coarse])


def box(left: float, top: float, width: float, height: float) -> torch.Tensor:
    """One box for one image and one view: [1, 1, 4]."""
    return torch.tensor([[[left, top, width, height]]], dtype=torch.float32)


NO_FLIP = torch.zeros(1, 1, dtype=torch.bool)
FLIP = torch.ones(1, 1, dtype=torch.bool)


# ------------------------------------------------------------------------------------------- colour ops


@pytest.mark.parametrize(
    ("ours", "reference", "low", "high", "atol"),
    [
        (adjust_brightness, TF.adjust_brightness, 0.0, 2.0, 1e-5),
        (adjust_contrast, TF.adjust_contrast, 0.0, 2.0, 1e-5),
        (adjust_saturation, TF.adjust_saturation, 0.0, 2.0, 1e-5),
        (adjust_hue, TF.adjust_hue, -0.5, 0.5, 1e-5),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_colour_ops_match_torchvision_per_sample(ours, reference, low, high, atol) -> None:
    images = random_images(16)
    factors = torch.linspace(low, high, 16)[torch.randperm(16, generator=torch.Generator().manual_seed(1))]
    out = ours(images, factors)
    expected = torch.stack([reference(images[i], float(factors[i])) for i in range(16)])
    assert out.shape == images.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=atol, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_colour_ops_leave_the_input_untouched() -> None:
    images = random_images(4)
    before = images.clone()
    for op in (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue):
        op(images, torch.full((4,), 0.3))
    torch.testing.assert_close(images, before, atol=0, rtol=0)


def test_rgb_hsv_round_trip_and_colorsys() -> None:
    images = random_images(8)
    hsv = rgb_to_hsv(images)
    torch.testing.assert_close(hsv_to_rgb(hsv), images, atol=2e-6, rtol=0)
    assert hsv[:, 0].min() >= 0 and hsv[:, 0].max() < 1
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.tensor([colorsys.rgb_to_hsv(*map(float, p)) for p in pixels[::7]])
    got = hsv.permute(0, 2, 3, 1).reshape(-1, 3)[::7]
    # Hue is circular: compare the distance around the wheel.
    hue_error = torch.remainder(got[:, 0] - expected[:, 0] + 0.5, 1.0) - 0.5
    assert hue_error.abs().max() < 1e-5
    torch.testing.assert_close(got[:, 1:], expected[:, 1:].float(), atol=1e-6, rtol=0)


def test_grayscale_matches_torchvision() -> None:
    images = random_images(6)
    torch.testing.assert_close(rgb_to_grayscale(images), TF.rgb_to_grayscale(images), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- geometry


def test_full_box_is_identity_and_flip_mirrors() -> None:
    images = torch.rand(3, 2, 16, 16)
    full = box(0, 0, 16, 16).expand(3, 1, 4)
    same = crop_resize(images, full, NO_FLIP.expand(3, 1), 16)
    mirrored = crop_resize(images, full, FLIP.expand(3, 1), 16)
    assert same.shape == (3, 1, 2, 16, 16)
    torch.testing.assert_close(same[:, 0], images, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored[:, 0], torch.flip(images, dims=[-1]), atol=1e-5, rtol=0)


def test_same_size_box_is_a_slice() -> None:
    images = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64)
    quarter = crop_resize(images, box(0, 0, 32, 32), NO_FLIP, 32)[0, 0]
    torch.testing.assert_close(quarter, images[0, :, :32, :32], atol=1e-3, rtol=0)
    shifted = crop_resize(images, box(16, 8, 32, 32), NO_FLIP, 32)[0, 0]
    torch.testing.assert_close(shifted, images[0, :, 8:40, 16:48], atol=1e-3, rtol=0)


@pytest.mark.parametrize("flip", [False, True])
def test_shrinking_box_matches_torchvision_resized_crop(flip: bool) -> None:
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    top, left, height, width = 4, 8, 48, 64
    ours = crop_resize(images, box(left, top, width, height).expand(2, 1, 4), torch.full((2, 1), flip), 32)
    expected = TF.resized_crop(images, top, left, height, width, [32, 32], antialias=False)
    if flip:
        expected = TF.horizontal_flip(expected)
    torch.testing.assert_close(ours[:, 0], expected, atol=1e-5, rtol=0)


def test_enlarging_box_matches_torchvision_inside_the_border() -> None:
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    top, left, height, width = 5, 7, 20, 16
    ours = crop_resize(images, box(left, top, width, height).expand(2, 1, 4), NO_FLIP.expand(2, 1), 32)[:, 0]
    expected = TF.resized_crop(images, top, left, height, width, [32, 32], antialias=False)
    # The outermost rows/columns interpolate with the pixels just outside the box (documented).
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    # At the image's own edges both repeat the edge pixel, so a corner box differs only on its inner side.
    ours = crop_resize(images, box(0, 0, width, height).expand(2, 1, 4), NO_FLIP.expand(2, 1), 32)[:, 0]
    expected = TF.resized_crop(images, 0, 0, height, width, [32, 32], antialias=False)
    torch.testing.assert_close(ours[..., :-1, :-1], expected[..., :-1, :-1], atol=1e-5, rtol=0)


def test_random_boxes_match_affine_grid_sampling() -> None:
    g = torch.Generator().manual_seed(11)
    images = torch.rand(4, 3, 30, 40, generator=g)
    boxes = sample_crop_boxes((4, 3), 30, 40, (0.1, 1.0), (0.5, 2.0), generator=g)
    flips = torch.rand(4, 3, generator=g) < 0.5
    theta = crop_theta(boxes, flips, 30, 40)
    assert torch.equal(theta[..., 0, 1], torch.zeros(4, 3)) and torch.equal(
        theta[..., 1, 0], torch.zeros(4, 3)
    )
    grid = F.affine_grid(theta.reshape(12, 2, 3), [12, 3, 20, 20], align_corners=False)
    expected = F.grid_sample(
        images.repeat_interleave(3, dim=0), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    ours = crop_resize(images, boxes, flips, 20)
    torch.testing.assert_close(ours.reshape(12, 3, 20, 20), expected, atol=1e-5, rtol=0)


def _bilinear_crop_by_hand(
    image: torch.Tensor, box: tuple[float, ...], flip: bool, size: int
) -> torch.Tensor:
    """Reference: output pixel (i, j) samples the image at its centre mapped into the box,
    x = left + (j + 0.5) * w / size - 0.5 (mirrored when flipped), bilinear, coordinates clamped to the image."""
    channels, height, width = image.shape
    left, top, w, h = box
    out = torch.empty(channels, size, size, dtype=torch.float64)
    img = image.double()
    for i in range(size):
        y = min(max(top + (i + 0.5) * h / size - 0.5, 0.0), height - 1.0)
        for j in range(size):
            jj = size - 1 - j if flip else j
            x = min(max(left + (jj + 0.5) * w / size - 0.5, 0.0), width - 1.0)
            x0, y0 = math.floor(x), math.floor(y)
            x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
            fx, fy = x - x0, y - y0
            top_row = img[:, y0, x0] * (1 - fx) + img[:, y0, x1] * fx
            bottom_row = img[:, y1, x0] * (1 - fx) + img[:, y1, x1] * fx
            out[:, i, j] = top_row * (1 - fy) + bottom_row * fy
    return out


@pytest.mark.parametrize("flip", [False, True])
def test_sub_pixel_boxes_sample_where_the_box_says(flip: bool) -> None:
    image = torch.rand(2, 17, 23, generator=torch.Generator().manual_seed(12))
    for box in [(3.3, 2.7, 17.9, 11.2), (0.0, 0.0, 23.0, 17.0), (15.6, 9.1, 7.4, 7.9)]:
        ours = crop_resize(image[None], torch.tensor([[box]]), torch.tensor([[flip]]), 9)[0, 0]
        torch.testing.assert_close(
            ours.double(), _bilinear_crop_by_hand(image, box, flip, 9), atol=1e-5, rtol=0
        )


def test_each_view_gets_its_own_box() -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    boxes = torch.tensor(
        [
            [[0, 0, 32, 32], [32, 16, 32, 48], [10, 20, 30, 40]],
            [[5, 5, 50, 50], [0, 0, 64, 64], [1, 2, 3, 4]],
        ],
        dtype=torch.float32,
    )
    flips = torch.tensor([[False, True, False], [True, False, True]])
    out = crop_resize(images, boxes, flips, 24)
    assert out.shape == (2, 3, 3, 24, 24)
    for i in range(2):
        for v in range(3):
            single = crop_resize(
                images[i : i + 1], boxes[i : i + 1, v : v + 1], flips[i : i + 1, v : v + 1], 24
            )
            torch.testing.assert_close(out[i, v], single[0, 0], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 80)])
def test_crop_boxes_fit_and_follow_scale_and_ratio(height: int, width: int) -> None:
    g = torch.Generator().manual_seed(5)
    boxes = sample_crop_boxes((20000,), height, width, (0.4, 1.0), (3 / 4, 4 / 3), generator=g)
    left, top, w, h = boxes.unbind(-1)
    eps = 1e-4
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + w <= width + eps).all() and (top + h <= height + eps).all()
    if height == width:  # the documented guarantee of clamping holds for square images
        area = w * h / (height * width)
        ratio = w / h
        assert area.min() >= 0.4 - eps and area.max() <= 1 + eps
        assert ratio.min() >= 3 / 4 - eps and ratio.max() <= 4 / 3 + eps
        assert area.min() < 0.42 and area.max() > 0.95  # the range is covered
        assert abs(float(torch.log(ratio).mean())) < 0.01  # log-uniform on a symmetric range
        # Boxes that fit are kept as drawn: the area is uniform up to where clamping starts (3/4).
        assert abs(float((area < 0.5).float().mean()) - 0.1 / 0.6) < 0.02
        # below area 0.7 no box is clamped: log(ratio) is uniform on [log 3/4, log 4/3], std = width / sqrt(12)
        log_ratio = torch.log(ratio[area < 0.7])
        assert abs(float(log_ratio.std()) - 2 * math.log(4 / 3) / math.sqrt(12)) < 0.01
        assert (
            float(log_ratio.min()) < math.log(3 / 4) + 0.01
            and float(log_ratio.max()) > math.log(4 / 3) - 0.01
        )
    # the position is uniform over the free space, independently in x and y
    free_x, free_y = width - w, height - h
    roomy = (free_x > 1) & (free_y > 1)
    u, v = left[roomy] / free_x[roomy], top[roomy] / free_y[roomy]
    for position in (u, v):
        assert abs(float(position.mean()) - 0.5) < 0.01 and abs(float(position.std()) - 12**-0.5) < 0.01
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.03


def test_random_choices_follow_their_probabilities() -> None:
    aug = ContrastiveAugment(8, MEAN, STD, n_views=2, flip_p=0.3, jitter_p=0.8, gray_p=0.2)
    params = aug.sample(10000, 8, 8, generator=torch.Generator().manual_seed(6))
    assert params.boxes.shape == (10000, 2, 4)
    assert abs(float(params.flip.float().mean()) - 0.3) < 0.05
    assert abs(float(params.jitter.float().mean()) - 0.8) < 0.05
    assert abs(float(params.gray.float().mean()) - 0.2) < 0.05
    for factors in (params.brightness, params.contrast, params.saturation):
        assert factors.min() >= 0.6 and factors.max() <= 1.4 and abs(float(factors.mean()) - 1) < 0.01
        # uniform on [0.6, 1.4]: std 0.8 / sqrt(12), and the whole range is used
        assert abs(float(factors.std()) - 0.8 / math.sqrt(12)) < 0.01
        assert factors.min() < 0.61 and factors.max() > 1.39
    assert params.hue.min() >= -0.1 and params.hue.max() <= 0.1 and abs(float(params.hue.mean())) < 0.005
    assert abs(float(params.hue.std()) - 0.2 / math.sqrt(12)) < 0.003
    # every random choice is drawn independently of the others
    fields = [params.flip, params.jitter, params.gray, params.brightness, params.contrast, params.saturation]
    fields.append(params.hue)
    stacked = torch.stack([f.float().flatten() for f in fields])
    correlation = torch.corrcoef(stacked) - torch.eye(len(fields))
    assert float(correlation.abs().max()) < 0.04, correlation


def test_flip_and_grayscale_fractions_in_the_output() -> None:
    """Read the choices off the images themselves: a full-image crop is the image or its mirror, and a
    grayscale view of a colourful image has three equal channels."""
    n, views = 300, 2
    images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    aug = ContrastiveAugment(
        8, (0, 0, 0), (1, 1, 1), n_views=views, crop_scale=(1, 1), crop_ratio=(1, 1), jitter_p=0.0
    )
    out = aug(images, torch.Generator().manual_seed(8))
    same = (out - images[:, None]).abs().amax(dim=(2, 3, 4)) < 1e-5
    mirrored = (out - torch.flip(images, dims=[-1])[:, None]).abs().amax(dim=(2, 3, 4)) < 1e-5
    gray = (out - out[:, :, :1]).abs().amax(dim=(2, 3, 4)) < 1e-6
    mirrored_gray = (out - rgb_to_grayscale(torch.flip(images, dims=[-1]))[:, None]).abs().amax(
        dim=(2, 3, 4)
    ) < 1e-5
    plain_gray = (out - rgb_to_grayscale(images)[:, None]).abs().amax(dim=(2, 3, 4)) < 1e-5
    assert bool((same | mirrored | mirrored_gray | plain_gray).all())
    assert abs(float((mirrored | mirrored_gray).float().mean()) - 0.5) < 0.05
    assert abs(float(gray.float().mean()) - 0.2) < 0.05


def test_pipeline_equals_torchvision_composition_per_view() -> None:
    """Given the sampled choices, each view is crop -> [brightness, contrast, saturation, hue] -> gray ->
    normalise, with torchvision's functional ops applied one view at a time."""
    images = (torch.rand(6, 3, 20, 20, generator=torch.Generator().manual_seed(9)) * 255).to(torch.uint8)
    aug = ContrastiveAugment(16, MEAN, STD, n_views=3, jitter_p=0.5, gray_p=0.5)
    params = aug.sample(6, 20, 20, generator=torch.Generator().manual_seed(10))
    assert params.jitter.any() and (~params.jitter).any() and params.gray.any() and (~params.gray).any()
    out = aug.apply(images, params)
    crops = crop_resize(images.float() / 255, params.boxes, params.flip, 16)
    for i in range(6):
        for v in range(3):
            x = crops[i, v]
            if params.jitter[i, v]:
                x = TF.adjust_brightness(x, float(params.brightness[i, v]))
                x = TF.adjust_contrast(x, float(params.contrast[i, v]))
                x = TF.adjust_saturation(x, float(params.saturation[i, v]))
                x = TF.adjust_hue(x, float(params.hue[i, v]))
            if params.gray[i, v]:
                x = TF.rgb_to_grayscale(x, num_output_channels=3)
            torch.testing.assert_close(out[i, v], TF.normalize(x, list(MEAN), list(STD)), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- the module


def test_shapes_dtypes_and_input_kinds() -> None:
    images = torch.randint(0, 256, (4, 3, 24, 20), dtype=torch.uint8)
    aug = ContrastiveAugment(16, MEAN, STD, n_views=3)
    out = aug(images, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 3, 16, 16) and out.dtype == torch.float32 and out.isfinite().all()
    # A float image in [0, 1] is the same input as its uint8 version.
    as_float = aug(images.double() / 255, torch.Generator().manual_seed(0))
    torch.testing.assert_close(as_float, out, atol=1e-4, rtol=0)
    # The views of one image differ.
    for v, w in ((0, 1), (0, 2), (1, 2)):
        assert ((out[:, v] - out[:, w]).abs().amax(dim=(1, 2, 3)) > 0.1).all()


def test_grayscale_input_gives_three_equal_channels() -> None:
    images = torch.randint(0, 256, (5, 1, 20, 20), dtype=torch.uint8)
    aug = ContrastiveAugment(12, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), n_views=2)
    out = aug(images, torch.Generator().manual_seed(1))
    assert out.shape == (5, 2, 3, 12, 12) and out.isfinite().all()
    torch.testing.assert_close(out[:, :, 1:], out[:, :, :1].expand(-1, -1, 2, -1, -1), atol=1e-5, rtol=0)
    # Same as feeding the image replicated to RGB, up to torchvision's luma weights summing to 0.9999
    # (which the RGB path's saturation and grayscale steps see).
    rgb = aug(images.expand(-1, 3, -1, -1), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, rgb, atol=1e-3, rtol=0)


def test_cpu_chunking_does_not_change_the_result() -> None:
    images = torch.randint(0, 256, (7, 3, 20, 20), dtype=torch.uint8)
    aug = ContrastiveAugment(16, MEAN, STD, n_views=2)
    params = aug.sample(7, 20, 20, generator=torch.Generator().manual_seed(3))
    aug.cpu_chunk_bytes = 1  # one image per step
    one_by_one = aug.apply(images, params)
    aug.cpu_chunk_bytes = 3 * 2 * 3 * 16 * 16 * 4  # three images per step, a partial last step
    by_three = aug.apply(images, params)
    aug.cpu_chunk_bytes = 1 << 40  # all at once
    at_once = aug.apply(images, params)
    torch.testing.assert_close(one_by_one, at_once, atol=1e-6, rtol=0)
    torch.testing.assert_close(by_three, at_once, atol=1e-6, rtol=0)


def test_seeded_calls_repeat_and_seeds_differ() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    aug = ContrastiveAugment(16, MEAN, STD)
    first = aug(images, torch.Generator().manual_seed(123))
    again = aug(images, torch.Generator().manual_seed(123))
    other = aug(images, torch.Generator().manual_seed(124))
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.allclose(first, other)


def test_input_is_not_modified() -> None:
    images = torch.rand(3, 3, 16, 16)
    before = images.clone()
    ContrastiveAugment(16, MEAN, STD, crop_scale=(1, 1), crop_ratio=(1, 1))(images)
    EvalTransform(16, MEAN, STD)(images)
    torch.testing.assert_close(images, before, atol=0, rtol=0)


def test_constant_image_at_the_mean_normalises_to_zero() -> None:
    images = torch.tensor(MEAN).reshape(1, 3, 1, 1).expand(2, 3, 20, 20)
    aug = ContrastiveAugment(
        12, MEAN, STD, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0, gray_p=0
    )
    out = aug(images)
    assert out.shape == (2, 2, 3, 12, 12)
    assert out.abs().max() < 1e-5


def test_invalid_inputs_are_rejected() -> None:
    aug = ContrastiveAugment(8, MEAN, STD)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        aug(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        aug(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="3 values"):
        ContrastiveAugment(8, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="crop_scale"):
        ContrastiveAugment(8, MEAN, STD, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="jitter"):
        ContrastiveAugment(8, MEAN, STD, jitter=(0.4, 0.4, 0.4, 0.6))


def test_eval_transform_matches_torchvision() -> None:
    images = torch.randint(0, 256, (3, 3, 40, 36), dtype=torch.uint8)
    out = EvalTransform(24, MEAN, STD)(images)
    expected = TF.normalize(TF.resize(images.float() / 255, [24, 24], antialias=True), list(MEAN), list(STD))
    assert out.shape == (3, 3, 24, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    unchanged = EvalTransform(36, MEAN, STD)(images[..., :36, :])
    torch.testing.assert_close(
        unchanged, TF.normalize(images[..., :36, :].float() / 255, list(MEAN), list(STD)), atol=1e-6, rtol=0
    )
    gray = EvalTransform(20, MEAN, STD)(images[:, :1])
    assert gray.shape == (3, 3, 20, 20)
    torch.testing.assert_close(
        gray,
        TF.normalize(
            TF.resize(images[:, :1].float() / 255, [20, 20]).expand(-1, 3, -1, -1), list(MEAN), list(STD)
        ),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu_with_a_gpu_generator() -> None:
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    aug = ContrastiveAugment(24, MEAN, STD, n_views=2)
    gpu = images.cuda()
    first = aug(gpu, torch.Generator(device="cuda").manual_seed(0))
    again = aug(gpu, torch.Generator(device="cuda").manual_seed(0))
    assert first.device.type == "cuda" and first.shape == (8, 2, 3, 24, 24)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    params = aug.sample(8, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        aug.apply(gpu, params.to("cuda")).cpu(), aug.apply(images, params), atol=1e-4, rtol=0
    )
