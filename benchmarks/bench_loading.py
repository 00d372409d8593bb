"""Decode + resize throughput of one data-loader worker (one process, one torch thread), for JPEG photos, at
the training sizes 32 px and 224 px (shorter side resized, centre crop), against what a training step
consumes:

- ``PIL + Pillow resize``: the loader before this benchmark (full decode, Pillow's antialiased bilinear
  ``resize``, crop), kept here as the reference;
- ``PIL + torch resize``: :class:`clinfonce.data.files.FileImageLoader` with ``jpeg_draft=False`` (full decode,
  torch's antialiased bilinear on ``uint8``);
- ``PIL draft + torch resize`` (the loader now): the JPEG decoder's DCT scaling first (PIL's ``Image.draft``:
  1/2, 1/4 or 1/8 while both sides stay at least the target), then torch's resize;
- ``torchvision.io.decode_jpeg``: ``read_file`` + ``decode_jpeg`` (libjpeg-turbo, full size) +
  ``transforms.v2.functional.resize`` (antialiased bilinear) + ``center_crop``.

The photos are scikit-learn's two sample JPEGs (640x427), cut into ``--n`` ImageNet-sized crops (500x375,
JPEG quality 90) in a temporary folder. Each decoder is checked against the full decode (mean and maximum
absolute difference in 0-255 levels) before it is timed; the timings are the best of ``--repeats`` passes
over all files, decoders alternating.

The training side: images/s of one optimizer step (2 views, Cl-InfoNCE, SGD) of the ``small`` backbone and
of ResNet-18 (CIFAR stem) at 32 px, and of ResNet-50 at 224 px, with all of torch's threads on this CPU.

    python benchmarks/bench_loading.py [--n 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _measure import best_seconds, machine

SIZES = (32, 224)


def make_photos(folder: Path, n: int) -> list[str]:
    """``n`` 500x375 (or 375x500) JPEG crops of scikit-learn's sample photos; their file names."""
    import sklearn

    source = Path(sklearn.__file__).parent / "datasets" / "images"
    photos = [Image.open(source / name).convert("RGB") for name in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        photo = photos[i % 2]
        width, height = (500, 375) if i % 4 < 3 else (375, 500)
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.3)
        resized = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BILINEAR)
        left = int(rng.integers(0, resized.width - width + 1))
        top = int(rng.integers(0, resized.height - height + 1))
        name = f"{i:04d}.jpg"
        resized.crop((left, top, left + width, top + height)).save(folder / name, quality=90)
        names.append(name)
    return names


def pillow_decoder(folder: Path, names: list[str], size: int) -> Callable[[int], torch.Tensor]:
    from clinfonce.data.files import open_image, to_8bit

    def load(i: int) -> torch.Tensor:
        image = to_8bit(open_image(folder / names[i]), names[i])
        scale = max(size / image.width, size / image.height)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        array = np.asarray(image.crop((left, top, left + size, top + size)))
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    return load


def torchvision_decoder(folder: Path, names: list[str], size: int) -> Callable[[int], torch.Tensor]:
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    def load(i: int) -> torch.Tensor:
        image = decode_jpeg(read_file(str(folder / names[i])))
        return F.center_crop(F.resize(image, size, antialias=True), [size, size])

    return load


def training_images_per_second(backbone: str, small_images: bool, size: int, batch: int) -> float:
    """Images/s of optimizer steps (2 views each) on random images, best of 3 after a warm-up step."""
    from clinfonce.losses import ClInfoNCELoss
    from clinfonce.models import Network

    encoder = Network(backbone, small_images=small_images, width=32)
    loss_fn = ClInfoNCELoss(temperature=0.1)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01, momentum=0.9)
    views = torch.randn(batch * 2, 3, size, size)
    ids = torch.arange(batch)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        z = encoder(views).view(batch, 2, -1)
        loss_fn(z, ids).backward()
        optimizer.step()

    return batch / best_seconds([step], repeats=3)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="JPEG files")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from clinfonce.data.files import FileImageLoader

    threads = torch.get_num_threads()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = make_photos(folder, args.n)
        megapixels = sum(Image.open(folder / name).width * Image.open(folder / name).height for name in names)
        print(
            f"{args.n} JPEG photos, {megapixels / args.n / 1e6:.3f} MP each, {os.path.getsize(folder / names[0]) // 1024} KiB (first)"
        )
        print()
        print("| size | decoder | images/s per worker | vs Pillow resize | mean / max abs. diff (levels) |")
        print("| --- | --- | ---: | ---: | --- |")
        torch.set_num_threads(1)  # one data-loader worker
        for size in SIZES:
            decoders = {
                "PIL + Pillow resize": pillow_decoder(folder, names, size),
                "PIL + torch resize": FileImageLoader(folder, names, size, jpeg_draft=False),
                "PIL draft + torch resize": FileImageLoader(folder, names, size),
                "torchvision.io.decode_jpeg": torchvision_decoder(folder, names, size),
            }
            reference = [decoders["PIL + Pillow resize"](i).int() for i in range(len(names))]
            differences = {}
            for label, load in decoders.items():
                diff = torch.cat([(load(i).int() - reference[i]).abs().flatten() for i in range(len(names))])
                differences[label] = (diff.float().mean().item(), int(diff.max()))
            passes = [(lambda load=load: [load(i) for i in range(len(names))]) for load in decoders.values()]
            seconds = best_seconds(passes, args.repeats)
            base = len(names) / seconds[0]
            for (label, _), took in zip(decoders.items(), seconds, strict=True):
                rate = len(names) / took
                mean, most = differences[label]
                print(f"| {size} | {label} | {rate:.0f} | {rate / base:.2f}x | {mean:.2f} / {most} |")
        torch.set_num_threads(threads)
        print()
        print(f"| training step (2 views, {threads} threads) | size | batch | images/s |")
        print("| --- | ---: | ---: | ---: |")
        for label, backbone, small, size, batch in (
            ("small (width 32)", "small", True, 32, 128),
            ("ResNet-18, CIFAR stem", "resnet18", True, 32, 64),
            ("ResNet-50", "resnet50", False, 224, 8),
        ):
            start = time.perf_counter()
            rate = training_images_per_second(backbone, small, size, batch)
            print(f"| {label} | {size} | {batch} | {rate:.1f} |  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
