"""The one prepared GPU measurement (run it when a GPU is lent; a few minutes on one device):

1. ResNet-50 training throughput at 224 px, channels-last, bf16 autocast, SGD, 2 views per image, in three
   steps of the pipeline: the bare backbone + head on ready views (forward + backward), the same with the
   Cl-InfoNCE loss, and the whole step with :class:`ContrastiveAugment` making the views on the GPU from
   ``uint8`` images. Images/s, best of ``--repeats`` timed blocks of ``--steps`` steps, synchronised.
2. The Cl-InfoNCE loss alone (forward + backward) at M = 16,384 and 65,536 views of 128 dimensions
   (``[M / 2, 2, 128]``, 1,000 clusters): milliseconds and peak memory, in float32.

    python benchmarks/bench_gpu.py [--batch 256] [--steps 10] [--repeats 3]
    python benchmarks/bench_gpu.py --smoke     # tiny sizes on the CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine


def timed(step: Callable[[], None], steps: int, repeats: int, device: torch.device) -> float:
    """Best seconds per step over ``repeats`` blocks of ``steps`` (after one warm-up block)."""
    best = float("inf")
    for block in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if block:  # the first block warms up (cuDNN autotuning, allocator)
            best = min(best, (time.perf_counter() - start) / steps)
    return best


def training_throughput(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from clinfonce.config import AugmentConfig
    from clinfonce.losses import ClInfoNCELoss
    from clinfonce.models import Network

    size, batch = args.size, args.batch
    encoder = Network("resnet50", small_images=False).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01, momentum=0.9)
    loss_fn = ClInfoNCELoss(temperature=0.1)
    augment = AugmentConfig().build(size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 2).to(device)
    images = torch.randint(
        0, 256, (batch, 3, size + size // 7, size + size // 7), dtype=torch.uint8, device=device
    )
    views = torch.randn(batch * 2, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    ids = torch.randint(0, 100, (batch,), device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )

    def backbone() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            z = encoder(views)
        z.float().square().mean().backward()
        optimizer.step()

    def with_loss() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            z = encoder(views)
        loss_fn(z.float().view(batch, 2, -1), ids).backward()
        optimizer.step()

    def whole_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        made = augment(images).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        with autocast:
            z = encoder(made)
        loss_fn(z.float().view(batch, 2, -1), ids).backward()
        optimizer.step()

    return {
        name: batch / timed(step, args.steps, args.repeats, device)
        for name, step in (
            ("backbone", backbone),
            ("+ loss", with_loss),
            ("+ loss + augmentation", whole_step),
        )
    }


def loss_at_scale(views: int, device: torch.device, repeats: int) -> dict[str, float]:
    from clinfonce.losses import ClInfoNCELoss

    generator = torch.Generator(device=device).manual_seed(0)
    features = torch.randn(views // 2, 2, 128, device=device, generator=generator).requires_grad_(True)
    ids = torch.randint(0, 1000, (views // 2,), device=device, generator=generator)
    loss_fn = ClInfoNCELoss(temperature=0.1)

    def step() -> None:
        features.grad = None
        loss_fn(features, ids).backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, 1, repeats, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"views": views, "ms": seconds * 1e3, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images per step (2 views each)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", type=int, nargs="+", default=[16_384, 65_536])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.size, args.steps, args.repeats, args.views = 2, 64, 1, 1, [256, 512]
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(
        f"machine: {machine()}; device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
    )
    result = {"training_images_per_s": training_throughput(args, device)}
    result["loss"] = [loss_at_scale(m, device, args.repeats) for m in args.views]
    print(f"ResNet-50, {args.size} px, batch {args.batch} x 2 views:")
    for name, rate in result["training_images_per_s"].items():
        print(f"  {name:24s} {rate:9.1f} images/s")
    for row in result["loss"]:
        print(
            f"  loss at M = {row['views']:6d}: {row['ms']:8.1f} ms forward + backward, peak {row['peak_mib']:.0f} MiB"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
