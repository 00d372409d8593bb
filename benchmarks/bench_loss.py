"""Cl-InfoNCE loss, forward + backward: time and peak memory against pytorch-metric-learning's SupConLoss.

Both compute the same L_out objective; the reference is run in the same invocation on the same inputs.
Each (implementation, M) pair runs in its own process so peak memory is not hidden by allocator caches.
A second table: soft positives from sparse tag vectors (5 tags per image from a 20,000-tag vocabulary,
``pos_vectors``) against the cluster loss at the same M, and against the obvious dense formula (an M x M
weight matrix from U U^T over the full logits).

    python benchmarks/bench_loss.py [--sizes 1024 4096 8192] [--dim 128] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _measure import machine, peak_rss_mib, run_isolated


def _inputs(m: int, dim: int, device: str):
    import torch

    gen = torch.Generator().manual_seed(0)
    features = torch.randn(m // 2, 2, dim, generator=gen).to(device).requires_grad_(True)
    ids = torch.randint(0, max(2, m // 16), (m // 2,), generator=gen).to(device)  # ~8 samples per cluster
    return features, ids


def _tag_vectors(n: int, device: str):
    """Sparse COO ``[n, 20000]``: 5 Zipf-drawn tags per image, each with weight 1."""
    import numpy as np
    import torch

    rng = np.random.default_rng(1)
    weights = 1.0 / np.arange(1, 20_001) ** 1.1
    tags = rng.choice(20_000, size=(n, 5), p=weights / weights.sum())
    dense_rows = np.repeat(np.arange(n), 5)
    coo = torch.sparse_coo_tensor(
        torch.tensor(np.stack([dense_rows, tags.reshape(-1)])), torch.ones(n * 5), (n, 20_000)
    ).coalesce()
    return torch.sparse_coo_tensor(coo.indices(), torch.ones_like(coo.values()), coo.shape).to(device)


def _dense_soft(features, vectors):
    """Soft positives the obvious way: an M x M weight matrix and the full M x M log-softmax."""
    import torch
    import torch.nn.functional as F

    n, v, _ = features.shape
    z = F.normalize(features, dim=-1).reshape(n * v, -1)
    u = F.normalize(vectors.to_dense(), dim=1)
    weights = (u @ u.T).repeat_interleave(v, 0).repeat_interleave(v, 1)  # [M, M]
    sample = torch.arange(n, device=z.device).repeat_interleave(v)
    weights = torch.where(sample[:, None] == sample[None, :], 1.0, weights)
    weights.fill_diagonal_(0)
    logits = (z @ z.T / 0.1).fill_diagonal_(float("-inf"))
    log_p = logits.log_softmax(dim=1).masked_fill(weights == 0, 0)
    return (-(weights * log_p).sum(1) / weights.sum(1)).mean()


def _step(impl: str, features, ids):
    import torch.nn.functional as F

    if impl in ("clinfonce", "soft"):
        from clinfonce import ClInfoNCELoss

        if impl == "soft":
            loss = ClInfoNCELoss(temperature=0.1)(features, pos_vectors=ids)
        else:
            loss = ClInfoNCELoss(temperature=0.1)(features, ids)
    elif impl == "dense_soft":
        loss = _dense_soft(features, ids)
    else:
        from pytorch_metric_learning.losses import SupConLoss

        embeddings = F.normalize(features, dim=-1).reshape(-1, features.shape[-1])
        loss = SupConLoss(temperature=0.1)(embeddings, ids.repeat_interleave(features.shape[1]))
    loss.backward()
    return loss.item()


def child(impl: str, m: int, dim: int, repeats: int, device: str) -> dict:
    import torch

    features, ids = _inputs(m, dim, device)
    if impl in ("soft", "dense_soft"):
        ids = _tag_vectors(m // 2, device)
    _step(impl, features, ids)  # warm-up: library initialisation, first-touch allocations
    times = []
    for _ in range(repeats):
        features.grad = None
        start = time.perf_counter()
        value = _step(impl, features, ids)
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    features.grad = None
    if device == "cpu":
        peak, _ = peak_rss_mib(lambda: _step(impl, features, ids))
    else:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(impl, features, ids)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"impl": impl, "m": m, "seconds": statistics.median(times), "peak_mib": peak, "loss": value}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.dim, args.repeats, args.device)))
        return
    print(f"machine: {machine()}; device {args.device}; D = {args.dim}; median of {args.repeats}\n")
    print(
        "| M (views) | clinfonce s | PML SupCon s | speed-up | clinfonce peak MiB | PML peak MiB | memory ratio | rel. diff of value |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in args.sizes:
        common = ["--dim", str(args.dim), "--repeats", str(args.repeats), "--device", args.device]
        ours = run_isolated(__file__, "--child", "clinfonce", str(m), *common)
        ref = run_isolated(__file__, "--child", "pml", str(m), *common)
        print(
            f"| {m} | {ours['seconds']:.3f} | {ref['seconds']:.3f} | {ref['seconds'] / ours['seconds']:.1f}x | "
            f"{ours['peak_mib']:.0f} | {ref['peak_mib']:.0f} | {ours['peak_mib'] / ref['peak_mib']:.2f} | "
            f"{abs(ours['loss'] - ref['loss']) / abs(ref['loss']):.1e} |",
            flush=True,
        )
    print("\nSoft positives (pos_vectors: sparse, 5 tags per image of 20,000):\n")
    print(
        "| M (views) | soft s | cluster loss s | soft / cluster | dense M x M soft s | dense / soft | "
        "soft peak MiB | dense peak MiB | rel. diff of value |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in args.sizes:
        common = ["--dim", str(args.dim), "--repeats", str(args.repeats), "--device", args.device]
        soft = run_isolated(__file__, "--child", "soft", str(m), *common)
        clusters = run_isolated(__file__, "--child", "clinfonce", str(m), *common)
        dense = run_isolated(__file__, "--child", "dense_soft", str(m), *common)
        print(
            f"| {m} | {soft['seconds']:.3f} | {clusters['seconds']:.3f} | "
            f"{soft['seconds'] / clusters['seconds']:.2f}x | {dense['seconds']:.3f} | "
            f"{dense['seconds'] / soft['seconds']:.1f}x | {soft['peak_mib']:.0f} | {dense['peak_mib']:.0f} | "
            f"{abs(soft['loss'] - dense['loss']) / abs(dense['loss']):.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
