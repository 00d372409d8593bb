"""The built-in dataset: procedurally generated shapes, made from a seed in seconds (nothing shipped or
downloaded).

Each image shows one shape on a background. The downstream label is shape x texture (12 classes):

- shape: circle, ring, square, triangle (squares and triangles randomly rotated);
- texture: solid, stripes (random direction), dots.

Auxiliary attributes come with every image, as a cheap metadata table would: informative but noisy, and
mixed with nuisance.

- ``round`` (circle or ring), ``hollow`` (ring), ``three_sided`` (triangle), ``patterned`` (not solid) and
  ``striped`` (stripes) together determine the label, but each is wrong for 15% of the images
  (:data:`ATTRIBUTE_NOISE`), as hand-entered metadata is;
- ``color`` (red, green, blue, yellow), ``large`` and ``dark_background``: nuisance, independent of the label.

Ranked by entropy the informative attributes come first (about 1.0, 0.96, 0.96, 0.91, 0.91 bits), then the
colours (0.81) and ``large``/``dark_background`` (0.72). The top-5 attribute clusters hold what the
attributes know about the label; fewer attributes merge classes, more split the clusters by nuisance
(I(Z;T) barely grows while H(Z|T) rises).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset, array_loader

SHAPES = ("circle", "ring", "square", "triangle")
TEXTURES = ("solid", "stripes", "dots")
COLORS = {
    "red": (0.90, 0.20, 0.20),
    "green": (0.20, 0.80, 0.30),
    "blue": (0.20, 0.40, 0.95),
    "yellow": (0.95, 0.85, 0.20),
}
#: The informative auxiliary attributes and the nuisance ones, as table columns.
ATTRIBUTE_COLUMNS = (
    "round",
    "hollow",
    "three_sided",
    "patterned",
    "striped",
    "large",
    "dark_background",
    "color",
)
#: probability that an informative attribute is flipped (wrong) for an image
ATTRIBUTE_NOISE = 0.15
CLASS_NAMES = tuple(f"{shape}/{texture}" for shape in SHAPES for texture in TEXTURES)


@dataclass(frozen=True)
class ShapesData:
    """A generated dataset.

    Attributes:
        images: ``uint8 [N, H, W, 3]``.
        table: one row per image: ``index``, ``split`` (train / test), ``label`` (0..11), ``label_name``,
            ``shape``, ``texture`` and the auxiliary columns of :data:`ATTRIBUTE_COLUMNS`.
    """

    images: np.ndarray
    table: pd.DataFrame


def make_shapes(n_train: int = 4000, n_test: int = 2000, image_size: int = 32, seed: int = 0) -> ShapesData:
    """Generate the shapes dataset deterministically from ``seed``.

    Args:
        n_train: training images (rows ``0..n_train-1``).
        n_test: test images (the rows after).
        image_size: side of the square images in pixels (>= 16).
        seed: the same seed always gives the same images and table.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, len(SHAPES), n)
    texture = rng.integers(0, len(TEXTURES), n)
    color = rng.integers(0, len(COLORS), n)
    large = rng.random(n) < 0.2
    dark = rng.random(n) < 0.2
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, n, 1024):  # bounded memory for large n
        rows = slice(start, min(start + 1024, n))
        images[rows] = _render(
            rng, shape[rows], texture[rows], color[rows], large[rows], dark[rows], image_size
        )
    table = pd.DataFrame(
        {
            "index": np.arange(n),
            "split": np.where(np.arange(n) < n_train, "train", "test"),
            "label": shape * len(TEXTURES) + texture,
            "label_name": [CLASS_NAMES[i] for i in shape * len(TEXTURES) + texture],
            "shape": [SHAPES[i] for i in shape],
            "texture": [TEXTURES[i] for i in texture],
            "round": _noisy(rng, shape <= 1),
            "hollow": _noisy(rng, shape == 1),
            "three_sided": _noisy(rng, shape == 3),
            "patterned": _noisy(rng, texture != 0),
            "striped": _noisy(rng, texture == 1),
            "large": large,
            "dark_background": dark,
            "color": [list(COLORS)[i] for i in color],
        }
    )
    return ShapesData(images=images, table=table)


def _noisy(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """``truth`` with each value flipped with probability :data:`ATTRIBUTE_NOISE`."""
    return truth ^ (rng.random(len(truth)) < ATTRIBUTE_NOISE)


def _render(
    rng: np.random.Generator,
    shape: np.ndarray,
    texture: np.ndarray,
    color: np.ndarray,
    large: np.ndarray,
    dark: np.ndarray,
    size: int,
) -> np.ndarray:
    """``uint8 [B, size, size, 3]`` images of a batch of parameter vectors ``[B]``."""
    b = len(shape)
    scale = size / 32
    grid = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(grid, grid, indexing="ij")  # [H, W]
    cx = (size / 2 + rng.uniform(-3, 3, b) * scale)[:, None, None]
    cy = (size / 2 + rng.uniform(-3, 3, b) * scale)[:, None, None]
    radius = (np.where(large, 11.0, 7.5) + rng.uniform(-1, 1, b))[:, None, None] * scale
    angle = rng.uniform(0, 2 * np.pi, b)[:, None, None]
    dx, dy = x[None] - cx, y[None] - cy  # [B, H, W]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    distance = np.hypot(dx, dy)
    masks = [
        distance <= radius,  # circle
        (distance <= radius) & (distance >= 0.55 * radius),  # ring
        (np.abs(u) <= 0.8 * radius) & (np.abs(v) <= 0.8 * radius),  # square
        np.all(
            [u * np.cos(a) + v * np.sin(a) <= 0.5 * radius for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)], axis=0
        ),
    ]
    inside = np.choose(shape[:, None, None], masks)
    period = 4 * scale
    stripe_angle = rng.uniform(0, np.pi, b)[:, None, None]
    along = x[None] * np.cos(stripe_angle) + y[None] * np.sin(stripe_angle)
    stripes = np.mod(along, period) < period / 2
    dots = (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 < (
        0.33 * period
    ) ** 2
    patterns = [np.ones_like(stripes), stripes, np.broadcast_to(dots, stripes.shape)]
    pattern = np.choose(texture[:, None, None], patterns)
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    foreground = np.clip(palette[color] + rng.uniform(-0.08, 0.08, (b, 3)), 0, 1)[:, None, None, :]
    background = np.where(dark, 0.15, 0.85)[:, None, None, None] + rng.normal(0, 0.04, (b, size, size, 1))
    # Inside the shape: the pattern in the foreground colour over a faint tint, so the outline stays visible.
    tint = 0.35 * foreground + 0.65 * background
    image = np.where(inside[..., None], np.where(pattern[..., None], foreground, tint), background)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def shapes_dataset(
    n_train: int = 4000, n_test: int = 2000, image_size: int = 32, seed: int = 0
) -> ImageDataset:
    """The shapes data as an :class:`ImageDataset` (attributes: :data:`ATTRIBUTE_COLUMNS`)."""
    data = make_shapes(n_train=n_train, n_test=n_test, image_size=image_size, seed=seed)
    pixels = data.images.reshape(-1, 3).astype(np.float64) / 255
    return ImageDataset(
        name="shapes",
        table=data.table,
        class_names=list(CLASS_NAMES),
        loader=array_loader(data.images),
        image_size=(image_size, image_size),
        channels=3,
        mean=tuple(float(v) for v in pixels.mean(axis=0)),
        std=tuple(float(v) for v in pixels.std(axis=0)),
        aux=AuxInfo(
            attributes=ATTRIBUTE_COLUMNS,
            notes="generated: round/hollow/three_sided/patterned/striped inform the label (each wrong for "
            f"{ATTRIBUTE_NOISE:.0%} of images), large/dark_background/color are nuisance",
        ),
    )
