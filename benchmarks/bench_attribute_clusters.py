"""attribute_clusters on a large table (default 1,000,000 rows x 300 binary attributes) against the obvious
pandas recipe (rank columns by entropy, then ``groupby(top-k columns).ngroup()``) on the same table.

    python benchmarks/bench_attribute_clusters.py [--rows 1000000] [--attributes 300] [--k 20 150]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from _measure import machine
from clinfonce.clusters import attribute_clusters


def pandas_reference(table: pd.DataFrame, k: int) -> np.ndarray:
    p = table.mean()
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    top = list(entropy.sort_values(ascending=False, kind="stable").index[:k])
    return table.groupby(top, sort=True).ngroup().to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--attributes", type=int, default=300)
    parser.add_argument("--k", type=int, nargs="+", default=[20, 150])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.02, 0.5, args.attributes).astype(np.float32)
    values = rng.random((args.rows, args.attributes), dtype=np.float32) < rates
    table = pd.DataFrame(values, columns=[f"attr{i:03d}" for i in range(args.attributes)])
    columns = list(table.columns)
    print(f"machine: {machine()}; table {args.rows:,} x {args.attributes} bool columns\n")
    print("| k | clusters | clinfonce s | pandas groupby s | speed-up | same partition |")
    print("|---:|---:|---:|---:|---:|---|")
    for k in args.k:
        start = time.perf_counter()
        ours = attribute_clusters(table, columns, k=k)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        ref = pandas_reference(table, k)
        ref_s = time.perf_counter() - start
        # same partition <=> the pair (ours, ref) has as many distinct values as either alone
        pairs = len(np.unique(ours.ids * (ref.max() + 1) + ref))
        same = pairs == ours.n_clusters == len(np.unique(ref))
        print(
            f"| {k} | {ours.n_clusters:,} | {ours_s:.2f} | {ref_s:.2f} | {ref_s / ours_s:.1f}x | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
