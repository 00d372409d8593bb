"""Batched augmentation for contrastive training, run on whatever device the batch is on.

The data loader only decodes and stacks ``uint8 [B, C, H, W]`` images; the training step calls
:class:`ContrastiveAugment` on the batch (on the GPU when there is one) and gets ``V`` augmented views of
every image. The pipeline is the paper's (SimCLR-style): random resized crop (scale 0.4-1), horizontal flip,
colour jitter (0.4, 0.4, 0.4, 0.1) with probability 0.8, grayscale with probability 0.2, then the dataset's
mean/std normalisation. :class:`EvalTransform` is the deterministic counterpart for evaluation.

Every random choice is drawn independently per image and per view, and the colour operations follow
``torchvision.transforms.v2.functional`` (each one clamps to [0, 1] like torchvision's). Deliberate
differences from torchvision's per-image ``RandomResizedCrop`` + ``ColorJitter`` pipeline:

- Crop boxes are continuous (sub-pixel position and size) instead of rounded to whole pixels, and a box that
  does not fit the image is clamped to it (each overflowing side cut to the image's side) instead of redrawn
  up to 10 times and then replaced by a centre crop; see :func:`sample_crop_boxes`.
- The crop, resize and flip are one bilinear ``grid_sample`` from the full image, without antialiasing; see
  :func:`crop_resize`.
- Colour jitter applies brightness, contrast, saturation, hue in this fixed order; torchvision draws a
  random order per call (vectorising a per-sample order would cost computing every operation four times).
- The pipeline runs in float32 from the start, so nothing is rounded to uint8 between operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AugmentParams",
    "ContrastiveAugment",
    "EvalTransform",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "crop_resize",
    "crop_theta",
    "hsv_to_rgb",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "sample_crop_boxes",
]

#: ITU-R 601-2 luma weights as torchvision's ``rgb_to_grayscale`` uses them (note 0.2989, not 0.299).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------------------
# Colour operations: images are float [N, 3, H, W] in [0, 1], factors float [N] (one per image).
# ----------------------------------------------------------------------------------------------------------


def _per_image(factor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return factor.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``clamp(ratio * images + (1 - ratio) * other, 0, 1)``, ratio per image (torchvision's ``_blend``)."""
    # Written as other + ratio * (images - other): torch.lerp is several times slower on the CPU when
    # ``other`` is broadcast (one value per image).
    return (images - other).mul_(_per_image(ratio, images)).add_(other).clamp_(0.0, 1.0)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images, with torchvision's weights :data:`GRAY_WEIGHTS`.

    Args:
        images: float ``[..., 3, H, W]`` in [0, 1].

    Returns:
        float ``[..., 1, H, W]`` in [0, 1].
    """
    r, g, b = images.unbind(dim=-3)
    wr, wg, wb = GRAY_WEIGHTS
    return r.mul(wr).add_(g, alpha=wg).add_(b, alpha=wb).unsqueeze(-3)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply by ``factor`` and clamp to [0, 1] (torchvision's ``adjust_brightness``), per image.

    Args:
        images: float ``[N, 3, H, W]`` in [0, 1].
        factor: float ``[N]``, >= 0; 1 leaves an image unchanged.

    Returns:
        float ``[N, 3, H, W]`` in [0, 1].
    """
    return (images * _per_image(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean of the image's grayscale version (torchvision's ``adjust_contrast``), per image.

    Args:
        images: float ``[N, 3, H, W]`` in [0, 1].
        factor: float ``[N]``, >= 0; 0 gives a uniform gray image, 1 the image unchanged.

    Returns:
        float ``[N, 3, H, W]`` in [0, 1].
    """
    # The mean of the grayscale image, from the channel means (no grayscale image needed).
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    mean = (images.mean(dim=(-2, -1)) * weights).sum(dim=-1)
    return _blend(images, mean.reshape(-1, 1, 1, 1), factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's grayscale version (torchvision's ``adjust_saturation``), per image.

    Args:
        images: float ``[N, 3, H, W]`` in [0, 1].
        factor: float ``[N]``, >= 0; 0 gives the grayscale image, 1 the image unchanged.

    Returns:
        float ``[N, 3, H, W]`` in [0, 1].
    """
    return _blend(images, rgb_to_grayscale(images), factor)


def _hue6_max_chroma(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For float ``[..., 3, H, W]`` RGB: hue * 6 in [0, 6], max channel and chroma (max - min), each
    ``[..., H, W]``. The hue of gray pixels (chroma 0) is arbitrary."""
    r, g, b = images.unbind(dim=-3)
    # Branch-free (Sam Hocevar's formulation): sort the channels with max/min and track the sector offset
    # arithmetically; torch.where is not vectorised on the CPU and dominated the cost.
    g_below_b = (g < b).to(images.dtype)
    high, low = torch.maximum(g, b), torch.minimum(g, b)
    r_below = (r < high).to(images.dtype)
    maxc, middle = torch.maximum(r, high), torch.minimum(r, high)
    chroma = maxc - torch.minimum(middle, low)
    # Offset: 0 (r max, g >= b), -6 (r max, g < b), -2 (g max), 4 (b max).
    offset = g_below_b.mul(-6.0).addcmul_(r_below, g_below_b.mul(12.0).sub_(2.0))
    # Where chroma is 0, middle - low is 0 too, so any positive divisor avoids NaN.
    hue6 = (middle - low).div_(chroma.clamp_min(torch.finfo(images.dtype).tiny)).add_(offset).abs_()
    return hue6, maxc, chroma


def _rgb_from_hue6(hue6: torch.Tensor, maxc: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB ``[..., 3, H, W]`` from hue * 6 (any real), max channel and chroma (each ``[..., H, W]``)."""
    # Closed form without branches: channel n in (r, g, b) = (5, 3, 1) is
    # max - chroma * clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6, which is the same as
    # (max - chroma) + chroma * clamp(|k - 2| - 1, 0, 1). Wrap 6 h into [0, 6] on the single plane; then
    # d = k - 2 = 6 h + n - 2 lies in [-1, 9], where the periodic |d| is min(|d|, |d - 6|).
    hue6 = hue6 - 6.0 * torch.floor(hue6 / 6.0)
    n_minus_2 = torch.tensor([3.0, 1.0, -1.0], dtype=hue6.dtype, device=hue6.device).reshape(3, 1, 1)
    d = hue6.unsqueeze(-3) + n_minus_2
    ramp = torch.minimum(d.abs(), d.sub_(6.0).abs_(), out=d).sub_(1.0).clamp_(0.0, 1.0)
    return torch.addcmul((maxc - chroma).unsqueeze(-3), chroma.unsqueeze(-3), ramp)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB to HSV for a batch.

    Args:
        images: float ``[..., 3, H, W]`` RGB in [0, 1].

    Returns:
        float ``[..., 3, H, W]``: hue in [0, 1) (fraction of the colour wheel, red = 0), saturation and
        value in [0, 1]. Gray pixels (all channels equal) get hue 0 and saturation 0.
    """
    hue6, maxc, chroma = _hue6_max_chroma(images)
    saturation = torch.where(maxc > 0, chroma / maxc.clamp_min(torch.finfo(images.dtype).tiny), 0.0)
    hue = torch.where(chroma > 0, torch.remainder(hue6 / 6.0, 1.0), 0.0)
    return torch.stack((hue, saturation, maxc), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV to RGB for a batch (the inverse of :func:`rgb_to_hsv`).

    Args:
        hsv: float ``[..., 3, H, W]``: hue (any real; taken modulo 1), saturation and value in [0, 1].

    Returns:
        float ``[..., 3, H, W]`` RGB in [0, 1].
    """
    hue, saturation, value = hsv.unbind(dim=-3)
    return _rgb_from_hue6(hue * 6.0, value, value * saturation)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue in HSV space (torchvision's ``adjust_hue``), per image.

    Computes ``hsv_to_rgb(rgb_to_hsv(images))`` with the hue shifted, without materialising saturation
    (the conversion back only needs value * saturation = max - min).

    Args:
        images: float ``[N, 3, H, W]`` in [0, 1].
        shift: float ``[N]`` in [-0.5, 0.5], as a fraction of the colour wheel; 0 leaves an image unchanged
            (up to float rounding).

    Returns:
        float ``[N, 3, H, W]`` in [0, 1].
    """
    hue6, maxc, chroma = _hue6_max_chroma(images)
    hue6 = hue6 + _per_image(shift, images).squeeze(1) * 6.0
    return _rgb_from_hue6(hue6, maxc, chroma).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur every image with its own Gaussian (separable, reflect padding), as torchvision's
    ``gaussian_blur`` does for one sigma.

    Args:
        images: float ``[N, C, H, W]``.
        sigma: float ``[N]`` standard deviations in pixels (> 0).
        kernel_size: odd kernel side, the same for all images.
    """
    n, c, h, w = images.shape
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(images.dtype)) ** 2)  # [N, K]
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N * C, K]
    pad = kernel_size // 2
    x = F.pad(images.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=n * c)  # along the width
    x = F.conv2d(x, kernel[:, None, :, None], groups=n * c)  # along the height
    return x.reshape(n, c, h, w)


def sample_crop_boxes(
    shape: Sequence[int],
    height: int,
    width: int,
    scale: tuple[float, float] = (0.4, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random crop boxes as torchvision's ``RandomResizedCrop`` samples them, without retries.

    The area fraction is uniform in ``scale``, the aspect ratio (width / height) log-uniform in ``ratio``,
    and the position uniform over the places where the box fits. Unlike torchvision, sizes and positions
    are continuous, and a box that does not fit is clamped (each overflowing side cut to the image's side)
    rather than redrawn up to 10 times. Clamping only shortens sides, so the ratio moves towards the image's
    and the area can fall below ``scale[0]``; for a square image and ``scale[1] <= 1`` the area fraction
    stays at least ``min(scale[0], ratio[0], 1 / ratio[1])`` (at the defaults: within ``scale``) and the
    ratio within ``ratio``.

    Args:
        shape: leading shape of the result, e.g. ``(B, V)``.
        height: image height in pixels.
        width: image width in pixels.
        scale: ``(min, max)`` area fraction, ``0 < min <= max``.
        ratio: ``(min, max)`` aspect ratio width / height, ``0 < min <= max``.
        generator: source of the random numbers (on ``device``); the default generator when None.
        device: where to create the boxes.

    Returns:
        float32 ``[*shape, 4]``: ``(left, top, box_width, box_height)`` in pixels, where pixel ``i`` covers
        ``[i, i + 1)``; ``0 <= left``, ``left + box_width <= width``, likewise vertically.
    """
    u = torch.rand((*shape, 4), generator=generator, device=device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    box_w = torch.sqrt(area * aspect).clamp_(max=width)
    box_h = torch.sqrt(area / aspect).clamp_(max=height)
    left = (width - box_w) * u[..., 2]
    top = (height - box_h) * u[..., 3]
    return torch.stack((left, top, box_w, box_h), dim=-1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop boxes out of each image, resize them to ``size x size`` and optionally mirror them, in one pass.

    Each box becomes one affine ``grid_sample`` (bilinear, ``align_corners=False``, border padding) from the
    full image, the flip folded in as a negative x scale (see :func:`crop_theta`). For a box on whole pixels,
    output pixel centres land where ``torchvision.transforms.v2.functional.resized_crop(...,
    antialias=False)`` samples, so the two agree exactly when the box shrinks or keeps its size; when it is
    enlarged, the outermost output rows and columns differ slightly, because they interpolate with the
    image's pixels just outside the box where torchvision repeats the box's edge. There is no antialiasing,
    so shrinking by large factors aliases (from 256 px images to 224 px views the largest factor is
    256 / 224; views of 32 px images at 32 px are only ever enlarged).

    Args:
        images: float ``[B, C, H, W]``, any value range.
        boxes: float ``[B, V, 4]`` ``(left, top, box_width, box_height)`` in pixels (see
            :func:`sample_crop_boxes`), V boxes per image.
        flip: bool ``[B, V]``: mirror the view horizontally.
        size: output side in pixels.

    Returns:
        float ``[B, V, C, size, size]``, same dtype as ``images``.
    """
    b, c, height, width = images.shape
    views = boxes.shape[1]
    theta = crop_theta(
        boxes.to(device=images.device, dtype=images.dtype), flip.to(images.device), height, width
    )
    # What F.affine_grid(theta, align_corners=False) gives, built by broadcasting: theta is diagonal, and
    # affine_grid's batched matmul costs as much as the sampling itself on the CPU.
    base = (torch.arange(size, dtype=images.dtype, device=images.device) * 2 + 1) / size - 1
    grid = torch.empty(b, views, size, size, 2, dtype=images.dtype, device=images.device)
    grid[..., 0] = (theta[..., 0, 0, None] * base + theta[..., 0, 2, None]).unsqueeze(-2)
    grid[..., 1] = (theta[..., 1, 1, None] * base + theta[..., 1, 2, None]).unsqueeze(-1)
    # Stack the V grids of an image along the output height: one grid_sample per image, no copy of the input.
    grid = grid.reshape(b, views * size, size, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, c, views, size, size).transpose(1, 2)


def crop_theta(boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ``F.affine_grid`` matrices (``align_corners=False``) that map output views onto crop boxes.

    Args:
        boxes: float ``[..., 4]`` ``(left, top, box_width, box_height)`` in pixels of a ``height x width``
            image.
        flip: bool ``[...]``: mirror horizontally (a negative x scale).
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``[..., 2, 3]`` with the dtype of ``boxes``: ``[[±w/W, 0, cx], [0, h/H, cy]]`` where ``(cx, cy)`` is
        the box centre in normalised coordinates (-1 and 1 are the outer edges of the image).
    """
    left, top, box_w, box_h = boxes.unbind(dim=-1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    theta = torch.zeros((*boxes.shape[:-1], 2, 3), dtype=boxes.dtype, device=boxes.device)
    theta[..., 0, 0] = sign * box_w / width
    theta[..., 0, 2] = (2 * left + box_w) / width - 1
    theta[..., 1, 1] = box_h / height
    theta[..., 1, 2] = (2 * top + box_h) / height - 1
    return theta


# ----------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, C, H, W] with C = 1 or 3, got shape {tuple(images.shape)}")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] in 0..255 or float in [0, 1] -> float32 in [0, 1], C checked to be 1 or 3."""
    _check(images)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or floating-point images, got {images.dtype}")
    return images.to(torch.float32)


def _stats(values: Sequence[float], name: str) -> torch.Tensor:
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(values)}")
    return torch.tensor([float(v) for v in values], dtype=torch.float32).reshape(1, 3, 1, 1)


class _Transform(nn.Module):
    """Base of the transforms: output size, and mean/std as non-persistent buffers (not in checkpoints)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.register_buffer("mean", _stats(mean, "mean"), persistent=False)
        self.register_buffer("std", _stats(std, "std"), persistent=False)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")


@dataclass
class AugmentParams:
    """The random choices of one :meth:`ContrastiveAugment.forward` call, for B images and V views each.

    Attributes:
        boxes: float32 ``[B, V, 4]`` crop boxes ``(left, top, width, height)`` in input pixels.
        flip: bool ``[B, V]``: mirrored horizontally.
        jitter: bool ``[B, V]``: colour jitter applied.
        brightness: float32 ``[B, V]`` brightness factors (used where ``jitter``).
        contrast: float32 ``[B, V]`` contrast factors (used where ``jitter``).
        saturation: float32 ``[B, V]`` saturation factors (used where ``jitter``).
        hue: float32 ``[B, V]`` hue shifts, fractions of the colour wheel (used where ``jitter``).
        gray: bool ``[B, V]``: converted to grayscale.
        blur: bool ``[B, V]``: blurred (all False when blurring is off).
        sigma: float32 ``[B, V]`` blur standard deviations in pixels (used where ``blur``).
    """

    boxes: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor

    def select(self, rows: slice | torch.Tensor) -> AugmentParams:
        """The parameters of some images (indexing the first dimension of every field)."""
        return AugmentParams(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def to(self, device: torch.device | str) -> AugmentParams:
        """The parameters on another device."""
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class ContrastiveAugment(_Transform):
    """``V`` randomly augmented views of every image of a batch, on the batch's device.

    Per image and view: random resized crop to ``image_size`` (see :func:`sample_crop_boxes` and
    :func:`crop_resize`), horizontal flip with probability ``flip_p``, colour jitter with probability
    ``jitter_p`` (brightness, contrast, saturation, hue, in this fixed order, each with its own random
    factor), grayscale with probability ``gray_p``, Gaussian blur with probability ``blur_p`` (sigma
    uniform in ``blur_sigma``, in pixels of the output), then ``(x - mean) / std``. Saturation, hue and
    grayscale leave 1-channel (grayscale) images unchanged, so on grayscale data only brightness and
    contrast jitter.

    Args:
        image_size: side of the square output views in pixels.
        mean: 3 per-channel means in [0, 1] units.
        std: 3 per-channel standard deviations in [0, 1] units.
        n_views: views per image (V).
        crop_scale: ``(min, max)`` area fraction of the crop box.
        crop_ratio: ``(min, max)`` aspect ratio (width / height) of the crop box, sampled log-uniformly.
        flip_p: probability of a horizontal flip.
        jitter: ``(brightness, contrast, saturation, hue)`` strengths: the first three factors are uniform
            in ``[max(0, 1 - j), 1 + j]``, the hue shift uniform in ``[-h, h]`` with ``h <= 0.5``.
        jitter_p: probability of applying colour jitter.
        gray_p: probability of converting to grayscale (kept as 3 channels).
        blur_p: probability of a Gaussian blur (0: off; its random draws are then not made at all, so the
            other choices stay those of a run without the option).
        blur_sigma: ``(min, max)`` blur standard deviation in pixels.
    """

    #: On the CPU the batch is processed a few images at a time, sized so the temporaries of one step take
    #: about this many bytes: they stay in the cache, and malloc reuses them instead of mapping (and
    #: page-faulting) fresh memory for every operation, which costs more than the arithmetic. On other
    #: devices the whole batch goes in one step (their caching allocators reuse memory already).
    cpu_chunk_bytes: int = 4 << 20

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        n_views: int = 2,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__(image_size, mean, std)
        if n_views < 1:
            raise ValueError(f"n_views must be at least 1, got {n_views}")
        if not 0 < crop_scale[0] <= crop_scale[1]:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max, got {crop_scale}")
        if not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {crop_ratio}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {blur_sigma}")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("gray_p", gray_p), ("blur_p", blur_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(f"jitter must be 4 non-negative strengths with hue <= 0.5, got {jitter}")
        self.n_views = int(n_views)
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.flip_p = float(flip_p)
        self.jitter = tuple(float(j) for j in jitter)
        self.jitter_p = float(jitter_p)
        self.gray_p = float(gray_p)
        self.blur_p = float(blur_p)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))

    def sample(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw the random choices for ``batch`` images of ``height x width`` pixels, ``n_views`` each.

        Args:
            batch: number of images (B).
            height: input image height.
            width: input image width.
            device: where to create the parameters (the batch's device).
            generator: source of all random numbers (on ``device``); the default generator when None.

        Returns:
            The parameters, every tensor ``[B, V, ...]`` on ``device``.
        """
        shape = (batch, self.n_views)
        boxes = sample_crop_boxes(shape, height, width, self.crop_scale, self.crop_ratio, generator, device)
        u = torch.rand((*shape, 8), generator=generator, device=device)
        b, c, s, h = self.jitter

        def factor(strength: float, column: torch.Tensor) -> torch.Tensor:
            low = max(0.0, 1.0 - strength)
            return low + (1.0 + strength - low) * column

        return AugmentParams(
            boxes=boxes,
            flip=u[..., 0] < self.flip_p,
            jitter=u[..., 1] < self.jitter_p,
            brightness=factor(b, u[..., 2]),
            contrast=factor(c, u[..., 3]),
            saturation=factor(s, u[..., 4]),
            hue=h * (2.0 * u[..., 5] - 1.0),
            gray=u[..., 6] < self.gray_p,
            **self._sample_blur(shape, device, generator),
        )

    def _sample_blur(
        self, shape: tuple[int, int], device: torch.device | str | None, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        if self.blur_p == 0:  # no draw: the random stream of the other choices stays as without blur
            return {
                "blur": torch.zeros(shape, dtype=torch.bool, device=device),
                "sigma": torch.ones(shape, device=device),
            }
        u = torch.rand((*shape, 2), generator=generator, device=device)
        low, high = self.blur_sigma
        return {"blur": u[..., 0] < self.blur_p, "sigma": low + (high - low) * u[..., 1]}

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment with given random choices (what :meth:`forward` does after :meth:`sample`).

        Args:
            images: uint8 ``[B, C, H, W]`` in 0..255 or float in [0, 1], C = 1 or 3.
            params: from :meth:`sample` for this batch size, image size and device.

        Returns:
            float32 ``[B, V, 3, image_size, image_size]``, normalised with mean/std.
        """
        _check(images)
        batch = images.shape[0]
        size, views = self.image_size, params.boxes.shape[1]
        out = torch.empty(batch, views, 3, size, size, dtype=torch.float32, device=images.device)
        step = max(batch, 1)
        if images.device.type == "cpu":
            step = max(1, self.cpu_chunk_bytes // (views * 3 * size * size * 4))
        for start in range(0, batch, step):
            rows = slice(start, start + step)
            self._augment(images[rows], params.select(rows), out[rows])
        return out

    def _augment(self, images: torch.Tensor, params: AugmentParams, out: torch.Tensor) -> None:
        """Augment ``images [b, C, H, W]`` into ``out`` (float32 ``[b, V, 3, S, S]``, contiguous)."""
        x = _to_float(images)
        batch, channels = x.shape[:2]
        size, views = self.image_size, params.boxes.shape[1]
        n = batch * views
        # Crop the single channel of grayscale inputs, then expand: 3x less resampling.
        x = crop_resize(x, params.boxes, params.flip, size)
        x = x.expand(batch, views, 3, size, size).reshape(n, 3, size, size)

        b, c, s, h = self.jitter
        if self.jitter_p > 0 and max(self.jitter) > 0:
            jittered = x
            if b > 0:
                jittered = adjust_brightness(jittered, params.brightness.reshape(n))
            if c > 0:
                jittered = adjust_contrast(jittered, params.contrast.reshape(n))
            # Saturation and hue leave gray images unchanged (torchvision skips them for 1 channel).
            if s > 0 and channels == 3:
                jittered = adjust_saturation(jittered, params.saturation.reshape(n))
            if h > 0 and channels == 3:
                jittered = adjust_hue(jittered, params.hue.reshape(n))
            # Selection by lerp with weight 0 or 1 (exact either way): torch.where with a per-view
            # condition is ~6x slower on the CPU.
            x = torch.lerp(x, jittered, params.jitter.reshape(n, 1, 1, 1).to(x.dtype))
        if self.gray_p > 0 and channels == 3:
            x = torch.lerp(x, rgb_to_grayscale(x).expand_as(x), params.gray.reshape(n, 1, 1, 1).to(x.dtype))
        if self.blur_p > 0:
            kernel = 2 * min(math.ceil(3 * self.blur_sigma[1]), (size - 1) // 2) + 1
            blurred = gaussian_blur(x, params.sigma.reshape(n), kernel)
            x = torch.lerp(x, blurred, params.blur.reshape(n, 1, 1, 1).to(x.dtype))
        dest = out.view(n, 3, size, size)
        torch.sub(x, self.mean.to(x.device), out=dest).div_(self.std.to(x.device))

    def eval_transform(self) -> EvalTransform:
        """The evaluation transform of the same size and normalisation (resize and normalise only), on this
        augmentation's device: how the features of the training images are taken during training."""
        transform = EvalTransform(self.image_size, self.mean.flatten().tolist(), self.std.flatten().tolist())
        return transform.to(self.mean.device)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_views`` augmented, normalised views of every image.

        Args:
            images: uint8 ``[B, C, H, W]`` in 0..255 or float in [0, 1], C = 1 (expanded to 3) or 3.
            generator: source of every random draw, on ``images.device``; seeding it makes the call
                reproducible. The default generator of that device when None.

        Returns:
            float32 ``[B, V, 3, image_size, image_size]``, normalised with mean/std, on ``images.device``.
        """
        _check(images)
        params = self.sample(images.shape[0], images.shape[2], images.shape[3], images.device, generator)
        return self.apply(images, params)


class EvalTransform(_Transform):
    """Deterministic evaluation transform: to float, 1 -> 3 channels, resize, normalise.

    Args:
        image_size: side of the square output images in pixels.
        mean: 3 per-channel means in [0, 1] units.
        std: 3 per-channel standard deviations in [0, 1] units.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Prepare a batch for evaluation.

        Args:
            images: uint8 ``[B, C, H, W]`` in 0..255 or float in [0, 1], C = 1 or 3.

        Returns:
            float32 ``[B, 3, image_size, image_size]`` normalised with mean/std; resized (bilinear,
            antialiased) when ``H x W`` is not ``image_size x image_size``.
        """
        x = _to_float(images)
        size = self.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x.expand(-1, 3, -1, -1) - self.mean.to(x.device)) / self.std.to(x.device)
