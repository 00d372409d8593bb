"""Throughput of ContrastiveAugment (one batched call) against two references, both making 2 views of the
same uint8 images in the same process, on the CPU:

- torchvision.transforms.v2 applied per image (RandomResizedCrop, RandomHorizontalFlip,
  RandomApply(ColorJitter), RandomGrayscale, ToDtype, Normalize): images/s, best of ``--repeats``;
- kornia's batched pipeline (RandomResizedCrop, RandomHorizontalFlip, ColorJitter(p=0.8), RandomGrayscale,
  Normalize in an AugmentationSequential, same_on_batch=False), one call on the batch with every image
  repeated V = 2 times, in both of kornia's cropping modes ("slice", its default, and "resample"): median ms
  per batch of B images, and the ratio kornia / ours against the faster kornia mode. Skipped, with a
  message, when kornia is not installed. (kornia's ColorJitter draws the order of its four operations once
  per call; ours applies them in a fixed order: the same work either way.)

    python benchmarks/bench_augment.py [--repeats 7] [--threads 1 2] [--against torchvision kornia]

Images/s counts input images (each gives 2 views). Every timed call starts from the uint8 batch, so the conversion to float is timed for all of them. The
implementations are timed alternately (one call of each per round, after a warm-up round), which spreads
interference from other processes over all of them. Both use torch's intra-op threads; a real data loader
would spread the per-image torchvision pipeline over worker processes instead.

Before timing kornia, the outputs of ours and kornia's on the same input are compared statistically
(per-channel mean and standard deviation, spread of the per-view brightness, fraction of grayscale views,
difference between the two views of an image), so that neither is faster by doing less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).parent))

from _measure import best_seconds, machine
from clinfonce.data.augment import ContrastiveAugment

try:
    import kornia
    import kornia.augmentation as K
except ImportError as error:  # optional: only the kornia comparison needs it
    kornia = None
    K = None
    KORNIA_ERROR = str(error)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
VIEWS = 2
# (batch, input side, output side)
CASES = [(256, 32, 32), (64, 256, 224)]
#: For kornia, rounds per case are this times --repeats: a 32-px round is short (~0.1-0.3 s), and more of
#: them make the median robust to a shared machine's slow spells.
ROUNDS_FACTOR = {32: 5, 224: 1}
KORNIA_MODES = ("slice", "resample")
#: Calls (of B images each) whose outputs are pooled for the statistical comparison.
CHECK_CALLS = 4


def torchvision_pipeline(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.4, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(MEAN), list(STD)),
        ]
    )


def kornia_pipeline(size: int, cropping_mode: str) -> torch.nn.Module:
    """kornia's equivalent of ContrastiveAugment for float [N, 3, H, W] in [0, 1] (one view per image)."""
    assert K is not None
    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.4, 1.0), cropping_mode=cropping_mode),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
        same_on_batch=False,
    )


def kornia_views(pipeline: torch.nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """``VIEWS`` views of uint8 ``images [B, 3, H, W]`` as float ``[B, VIEWS, 3, size, size]``: the batch
    converted to float in [0, 1], each image repeated ``VIEWS`` times, one kornia call on the B * V images."""
    x = images.to(torch.float32).div_(255.0).repeat_interleave(VIEWS, dim=0)
    return pipeline(x).view(images.shape[0], VIEWS, 3, size, size)


def median_seconds(calls: list[Callable[[], Any]], repeats: int) -> tuple[list[float], list[list[float]]]:
    """Median wall time of each call over ``repeats`` alternated rounds after a warm-up round, and every
    round's times (``[round][call]``)."""
    for call in calls:
        call()
    rounds = []
    for _ in range(repeats):
        times = []
        for call in calls:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        rounds.append(times)
    return [statistics.median(column) for column in zip(*rounds, strict=True)], rounds


def smooth_images(batch: int, side: int) -> torch.Tensor:
    """uint8 images of smooth random colour fields (a 4 x 4 random image upsampled), with some noise: unlike
    uniform noise, their means and saturations differ from image to image."""
    coarse = torch.rand(batch, 3, 4, 4)
    fields = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    fields = fields + 0.05 * torch.randn_like(fields)
    return fields.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def output_stats(views: list[torch.Tensor]) -> dict[str, float]:
    """Statistics of augmented views (float ``[B, V, 3, S, S]``, normalised), pooled over the calls."""
    mean = torch.tensor(MEAN).reshape(1, 1, 3, 1, 1)
    std = torch.tensor(STD).reshape(1, 1, 3, 1, 1)
    x = torch.cat(views) * std + mean  # back to [0, 1]
    channel_mean = x.mean(dim=(0, 1, 3, 4))
    channel_std = x.transpose(0, 2).reshape(3, -1).std(dim=1)
    per_view_mean = x.mean(dim=(2, 3, 4))
    gray = (x.amax(dim=2) - x.amin(dim=2)).amax(dim=(-2, -1)) < 1e-3
    stats = {f"mean {c}": float(channel_mean[i]) for i, c in enumerate("RGB")}
    stats |= {f"std {c}": float(channel_std[i]) for i, c in enumerate("RGB")}
    stats["std of view means"] = float(per_view_mean.std())
    stats["mean spatial std of a view"] = float(x.std(dim=(-2, -1)).mean())
    stats["grayscale views"] = float(gray.float().mean())
    stats["|view 1 - view 2|"] = float((x[:, 0] - x[:, 1]).abs().mean())
    return stats


def compare_outputs(
    ours: ContrastiveAugment, theirs: dict[str, torch.nn.Module], images: torch.Tensor, size: int
) -> list[tuple[str, float, list[float], bool]]:
    """Pooled statistics of ours and of each kornia pipeline on ``images``: rows (statistic, ours, kornia
    values, whether every kornia value agrees with ours: within 0.02 absolute or 10% relative; for the
    fraction of grayscale views, within 4 binomial standard errors of the difference of two fractions)."""
    stats = [output_stats([ours(images) for _ in range(CHECK_CALLS)])]
    for pipeline in theirs.values():
        stats.append(output_stats([kornia_views(pipeline, images, size) for _ in range(CHECK_CALLS)]))
    n_views = CHECK_CALLS * images.shape[0] * VIEWS
    rows = []
    for name, value in stats[0].items():
        others = [s[name] for s in stats[1:]]
        tolerance = max(0.02, 0.1 * abs(value))
        if name == "grayscale views":
            tolerance = 4 * (2 * 0.2 * 0.8 / n_views) ** 0.5
        rows.append((name, value, others, all(abs(o - value) <= tolerance for o in others)))
    return rows


def bench_torchvision(threads: list[int], repeats: int) -> None:
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch, side, size in CASES:
            images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8)
            ours = ContrastiveAugment(size, MEAN, STD, n_views=VIEWS)
            per_image = torchvision_pipeline(size)

            def batched(ours: ContrastiveAugment = ours, images: torch.Tensor = images) -> torch.Tensor:
                return ours(images)

            def looped(per_image: v2.Compose = per_image, images: torch.Tensor = images) -> torch.Tensor:
                return torch.stack(
                    [torch.stack([per_image(image) for _ in range(VIEWS)]) for image in images]
                )

            assert batched().shape == looped().shape == (batch, VIEWS, 3, size, size)
            ours_s, tv_s = best_seconds([batched, looped], repeats)
            rows.append((batch, f"{side}² → {size}²", n_threads, batch / ours_s, batch / tv_s))

    print("\nTorchvision v2 per image (best of", repeats, "alternated runs)\n")
    print("| batch | image size | threads | ours img/s | torchvision v2 per image img/s | speed-up |")
    print("|---:|:---|---:|---:|---:|---:|")
    for batch, shape, n_threads, ours_rate, tv_rate in rows:
        speed_up = ours_rate / tv_rate
        print(f"| {batch} | {shape} | {n_threads} | {ours_rate:,.0f} | {tv_rate:,.0f} | {speed_up:.1f}x |")


def bench_kornia(threads: list[int], repeats: int) -> None:
    if kornia is None:
        print(f"\nkornia comparison skipped: kornia is not importable ({KORNIA_ERROR}); pip install kornia")
        return
    rounds = ", ".join(f"{repeats * ROUNDS_FACTOR.get(size, 1)} at {size} px" for _, _, size in CASES)
    print(f"\nkornia {kornia.__version__}, batched (median of alternated runs: {rounds})")
    torch.set_num_threads(max(threads))
    for batch, side, size in CASES:
        ours = ContrastiveAugment(size, MEAN, STD, n_views=VIEWS)
        theirs = {mode: kornia_pipeline(size, mode) for mode in KORNIA_MODES}
        print(
            f"\nOutputs at {side}² → {size}², {CHECK_CALLS} calls of {batch} images x {VIEWS} views pooled:\n"
        )
        print(f"| input | statistic | ours | {' | '.join(f'kornia {m}' for m in theirs)} | agree |")
        print(f"|:---|:---|---:|{'---:|' * len(theirs)}:---|")
        for input_name, images in (
            ("uniform noise (as timed)", torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8)),
            ("smooth colour fields", smooth_images(batch, side)),
        ):
            for name, value, others, agree in compare_outputs(ours, theirs, images, size):
                cells = " | ".join(f"{o:.3f}" for o in others)
                print(f"| {input_name} | {name} | {value:.3f} | {cells} | {'yes' if agree else 'NO'} |")

    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch, side, size in CASES:
            images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8)
            ours = ContrastiveAugment(size, MEAN, STD, n_views=VIEWS)
            calls: list[Callable[[], torch.Tensor]] = [lambda ours=ours, images=images: ours(images)]
            for mode in KORNIA_MODES:
                pipeline = kornia_pipeline(size, mode)
                calls.append(lambda p=pipeline, images=images, size=size: kornia_views(p, images, size))
            for call in calls:
                assert call().shape == (batch, VIEWS, 3, size, size)
            medians, rounds = median_seconds(calls, repeats * ROUNDS_FACTOR.get(size, 1))
            best = min(range(1, len(calls)), key=lambda i: medians[i])
            per_round = [times[best] / times[0] for times in rounds]
            rows.append((batch, f"{side}² → {size}²", n_threads, medians, KORNIA_MODES[best - 1], per_round))

    print(
        f"\n| batch | image size | threads | ours ms | {' | '.join(f'kornia {m} ms' for m in KORNIA_MODES)} "
        "| kornia (faster mode) / ours | per-round range |"
    )
    print(f"|---:|:---|---:|---:|{'---:|' * len(KORNIA_MODES)}---:|---:|")
    for batch, shape, n_threads, medians, best_mode, per_round in rows:
        ms = " | ".join(f"{1e3 * t:,.1f}" for t in medians)
        ratio = min(medians[1:]) / medians[0]
        print(
            f"| {batch} | {shape} | {n_threads} | {ms} | {ratio:.1f}x ({best_mode}) "
            f"| {min(per_round):.1f}-{max(per_round):.1f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch intra-op thread counts (default: 1 and torch's)",
    )
    parser.add_argument(
        "--against",
        nargs="+",
        choices=("torchvision", "kornia"),
        default=["torchvision", "kornia"],
        help="references to compare with (default: both)",
    )
    args = parser.parse_args()
    threads = args.threads or sorted({1, torch.get_num_threads()})
    torch.manual_seed(0)

    print(f"Machine: {machine()}")
    if "torchvision" in args.against:
        bench_torchvision(threads, args.repeats)
    if "kornia" in args.against:
        bench_kornia(threads, args.repeats)
    print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
