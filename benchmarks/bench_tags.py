"""Stage 1 over a long-tail tag vocabulary (default 1,000,000 images, 20,000 tags, 5 tags each drawn from a
Zipf law) against pandas merely splitting and counting the same tag strings
(``column.str.split().explode().value_counts()``), each in a fresh process with its peak memory.

Ours is the whole of stage 1: parse into the sparse image x tag matrix, rank the tags by entropy, and the
top-k combination (``attribute_clusters(table, tags=[...], k)``); and the tag K-means
(``tag_kmeans_clusters``, 10 k clusters, tf-idf, truncated SVD to 256 dimensions) against the same
K-means after a sparse random projection to 256 dimensions instead, with how much of the planted topic
each recovers, I(Z; topic). A dense 0/1 table of the same tags would need N x T bytes (20 GB here).

    python benchmarks/bench_tags.py [--rows 1000000] [--vocabulary 20000] [--per-image 5] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

from _measure import machine, peak_rss_mib, run_isolated


def zipf_tags(rows: int, vocabulary: int, per_image: int, topics: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` strings of ``per_image`` tags drawn by rank r with probability ~ 1 / r^1.1: each image has
    one of ``topics`` topics, and a tag is, with probability 0.7, rank r of its topic's own ordering of
    the vocabulary, else rank r of a global ordering (the same frequent tags everywhere: noise)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.1
    ranks = rng.choice(vocabulary, size=(rows, per_image), p=weights / weights.sum())
    topic = rng.integers(topics, size=rows)
    orderings = np.stack([rng.permutation(vocabulary) for _ in range(topics)])  # [topics, V]
    tag = np.where(rng.random((rows, per_image)) < 0.7, orderings[topic[:, None], ranks], ranks)
    words = np.array([f"tag{r:05d}" for r in range(vocabulary)], dtype=object)
    cells = [" ".join(row) for row in words[tag].tolist()]
    return pd.DataFrame({"tags": cells, "topic": topic})


def topic_information(ids: np.ndarray, table: pd.DataFrame) -> dict[str, float]:
    """I(Z; topic) and H(topic) in bits: how much of the hidden topic the clusters recover."""
    from clinfonce.clusters import cluster_stats

    stats = cluster_stats(ids, table["topic"].to_numpy())
    return {"I(Z;topic)": round(stats.I_Z_T, 3), "H(topic)": round(stats.H_T, 3)}


def child(task: str, path: str, k: int) -> None:
    table = pd.read_parquet(path)
    start = time.perf_counter()
    if task == "pandas":
        peak, counts = peak_rss_mib(lambda: table["tags"].str.split().explode().value_counts())
        result = {"tags": len(counts)}
    elif task == "stage1":
        from clinfonce.clusters import attribute_clusters

        peak, clusters = peak_rss_mib(lambda: attribute_clusters(table, tags=["tags"], k=k))
        result = {
            "clusters": clusters.n_clusters,
            "tags": clusters.provenance["n_binary_attributes"],
            **topic_information(clusters.ids, table),
        }
    elif task == "tag_kmeans":
        from clinfonce.clusters import parse_tags, tag_kmeans_clusters

        def run() -> object:
            return tag_kmeans_clusters(parse_tags(table, ["tags"]), k=k * 10)

        peak, clusters = peak_rss_mib(run)
        result = {
            "clusters": clusters.n_clusters,
            "largest": int(clusters.sizes.max()),
            "reduction_seconds": clusters.provenance["reduction_seconds"],
            **topic_information(clusters.ids, table),
        }
    else:  # the alternative to the truncated SVD: a sparse random projection of the same tf-idf vectors
        from sklearn.random_projection import SparseRandomProjection

        from clinfonce.clusters import kmeans_clusters, parse_tags

        def run() -> tuple[object, float]:
            vectors = parse_tags(table, ["tags"]).weighted("tfidf")
            started = time.perf_counter()
            norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1))).reshape(-1, 1)
            unit = vectors.multiply(1 / np.maximum(norms, 1e-12)).tocsr()
            projection = SparseRandomProjection(n_components=256, dense_output=True, random_state=0)
            reduced = projection.fit_transform(unit).astype(np.float32)
            seconds = time.perf_counter() - started
            return kmeans_clusters(reduced, k * 10, spherical=True), seconds

        peak, (clusters, seconds) = peak_rss_mib(run)
        result = {
            "clusters": clusters.n_clusters,
            "largest": int(clusters.sizes.max()),
            "reduction_seconds": round(seconds, 3),
            **topic_information(clusters.ids, table),
        }
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak, **result}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--vocabulary", type=int, default=20_000)
    parser.add_argument("--per-image", type=int, default=5)
    parser.add_argument("--k", type=int, default=20, help="top-k tags; tag K-means uses 10 k clusters")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--child", nargs=2, metavar=("TASK", "PARQUET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.k)
        return
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "tags.parquet")
        zipf_tags(args.rows, args.vocabulary, args.per_image, args.topics).to_parquet(path)
        print(
            f"{args.rows:,} images x {args.vocabulary:,}-tag vocabulary, {args.per_image} Zipf-drawn tags "
            f"each from {args.topics} topics (a dense 0/1 table: {args.rows * args.vocabulary / 1e9:.0f} GB)\n"
        )
        print("| task | seconds | peak MiB | ratio to pandas split + count | result |")
        print("|---|---:|---:|---:|---|")
        reference = run_isolated(__file__, "--child", "pandas", path, "--k", str(args.k))
        tasks = ["pandas", "stage1", "tag_kmeans", "projection_kmeans"]
        for task in tasks:
            result = (
                reference
                if task == "pandas"
                else run_isolated(__file__, "--child", task, path, "--k", str(args.k))
            )
            extra = {key: value for key, value in result.items() if key not in ("seconds", "peak_mib")}
            print(
                f"| {task} | {result['seconds']:.2f} | {result['peak_mib']:.0f} | "
                f"{result['seconds'] / reference['seconds']:.2f}x | {extra} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
