"""A full training step (batched augmentation + forward + loss + backward + optimizer step) against the
backbone's bare forward + backward on the same, already augmented batch: how much the pipeline around the
network costs. Target: the full step keeps at least 85% of the bare throughput on a small-image CPU run.

    python benchmarks/bench_train_step.py [--backbone small] [--batch 256] [--image-size 32] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _measure import best_seconds, machine
from clinfonce.data.augment import ContrastiveAugment
from clinfonce.losses import ClInfoNCELoss
from clinfonce.models import Network


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = Network(args.backbone, small_images=True).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    augment = ContrastiveAugment(args.image_size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    loss_fn = ClInfoNCELoss(temperature=0.1)
    images = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8)
    ids = torch.randint(0, 16, (args.batch,))
    fixed_views = augment(images).flatten(0, 1).contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        encoder.zero_grad(set_to_none=True)
        encoder.backbone(fixed_views).sum().backward()

    def full() -> None:
        views = augment(images)  # [B, 2, 3, S, S]
        flat = views.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        z = encoder(flat).view(args.batch, 2, -1)
        loss = loss_fn(z, ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # alternated, so that a slow spell of this shared machine hits all three alike
    bare_s, full_s, augment_s = best_seconds([bare, full, lambda: augment(images)], args.repeats)
    print(f"machine: {machine()}\n")
    print(
        f"backbone {args.backbone}, batch {args.batch} images x 2 views of {args.image_size} px, best of {args.repeats}\n"
    )
    print("| step | seconds | images/s | share of bare throughput |")
    print("|---|---:|---:|---:|")
    print(f"| bare backbone forward + backward | {bare_s:.3f} | {args.batch / bare_s:.0f} | 100% |")
    print(
        f"| full step (augment + encoder + head + loss + backward + SGD) | {full_s:.3f} | {args.batch / full_s:.0f} | {bare_s / full_s:.0%} |"
    )
    print(f"| augmentation alone | {augment_s:.3f} | {args.batch / augment_s:.0f} | |")


if __name__ == "__main__":
    main()
