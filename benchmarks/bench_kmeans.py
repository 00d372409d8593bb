"""K-means at scale: the time of :func:`clinfonce.clusters.kmeans_clusters` (faiss, spherical) on N points of
D dimensions with k clusters, training the centroids on a subsample of ``k x points_per_centroid`` rows and
then assigning all N rows in blocks, as the re-clustering during training does on rank 0.

The points are a mixture of k Gaussian blobs on the unit sphere (float32, ``N x D`` in memory). Every
setting runs once (these are minutes, not milliseconds); the assignment alone (a search of N rows against k
centroids, the part that grows with N) is timed separately.

    python benchmarks/bench_kmeans.py [--n 1000000] [--dim 128] [--k 10000] [--points-per-centroid 8 32]
        [--restarts 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine, peak_rss_mib


def blobs(n: int, dim: int, k: int, seed: int = 0) -> np.ndarray:
    """``float32 [n, dim]`` unit vectors around ``k`` random centres (spread 0.5 / sqrt(dim) per axis)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        members = rng.integers(0, k, stop - start)
        block = centres[members] + rng.standard_normal((stop - start, dim), dtype=np.float32) * (
            0.5 / np.sqrt(dim)
        )
        points[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10_000)
    parser.add_argument("--points-per-centroid", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--restarts", type=int, default=1)
    args = parser.parse_args()
    from clinfonce.clusters import kmeans_clusters

    print(f"machine: {machine()}, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)")
    start = time.perf_counter()
    points = blobs(args.n, args.dim, args.k)
    print(
        f"N = {args.n:,}, D = {args.dim}, k = {args.k:,}: points made in {time.perf_counter() - start:.0f} s"
    )

    index = faiss.IndexFlatIP(args.dim)
    index.add(points[np.random.default_rng(1).choice(args.n, args.k, replace=False)])
    start = time.perf_counter()
    for block in range(0, args.n, 32_768):
        index.search(points[block : block + 32_768], 1)
    assign = time.perf_counter() - start
    print(f"assignment alone (N rows against k centroids, blocks of 32,768): {assign:.1f} s")
    print()
    print("| points per centroid | rows trained on | restarts | total s | peak extra MiB | inertia / N |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for per_centroid in args.points_per_centroid:
        start = time.perf_counter()
        memory, clusters = peak_rss_mib(
            lambda per_centroid=per_centroid: kmeans_clusters(
                points,
                args.k,
                seed=0,
                spherical=True,
                nredo=args.restarts,
                max_points_per_centroid=per_centroid,
            )
        )
        took = time.perf_counter() - start
        provenance = clusters.provenance
        print(
            f"| {per_centroid} | {provenance['n_train_points']:,} | {args.restarts} | {took:.0f} | "
            f"{memory:.0f} | {provenance['inertia'] / args.n:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
