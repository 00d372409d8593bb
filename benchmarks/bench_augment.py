"""Throughput of ContrastiveAugment (one batched call) against torchvision.transforms.v2 applied per image
(RandomResizedCrop, RandomHorizontalFlip, RandomApply(ColorJitter), RandomGrayscale, ToDtype, Normalize),
both making 2 views of the same uint8 images in the same process, on the CPU.

    python benchmarks/bench_augment.py [--repeats 7] [--threads 1 2]

Images/s counts input images (each gives 2 views). The two are timed alternately and the best of
``--repeats`` runs is kept, which filters out interference from other processes. Both use torch's
intra-op threads; a real data loader would spread the per-image pipeline over worker processes instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).parent))

from _measure import best_seconds, machine
from clinfonce.data.augment import ContrastiveAugment

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
VIEWS = 2
# (batch, input side, output side)
CASES = [(256, 32, 32), (64, 256, 224)]


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
    args = parser.parse_args()
    threads = args.threads or sorted({1, torch.get_num_threads()})
    torch.manual_seed(0)

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
            ours_s, tv_s = best_seconds([batched, looped], args.repeats)
            rows.append((batch, f"{side}² → {size}²", n_threads, batch / ours_s, batch / tv_s))

    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| batch | image size | threads | ours img/s | torchvision v2 per image img/s | speed-up |")
    print("|---:|:---|---:|---:|---:|---:|")
    for batch, shape, n_threads, ours_rate, tv_rate in rows:
        speed_up = ours_rate / tv_rate
        print(f"| {batch} | {shape} | {n_threads} | {ours_rate:,.0f} | {tv_rate:,.0f} | {speed_up:.1f}x |")


if __name__ == "__main__":
    main()
