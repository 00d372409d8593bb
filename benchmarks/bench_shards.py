"""WebDataset shards: what reading them costs, and the choice of reader.

1. Decoded images/s of one data-loader worker (one process, one torch thread) at 32 px and 224 px, for the
   same JPEG photos (those of ``bench_loading.py``) read as files (``FileImageLoader``), from shards by
   position in a random order (``ShardImageLoader``: one ``pread`` per image, the order the sampler
   draws), and from shards by the ``webdataset`` library's streaming pipeline (its tar reader, with the
   same decode and resize): the reading side is all that differs.
2. The metadata pass (``index_shards``: tar headers and json members, no image decoded) over
   ``--samples`` tiny samples (an 8x8 PNG and a json with a label and two tags) in shards of 10,000.
3. Peak resident memory of a training process on 100,000 and on ``--samples`` of those samples: load the
   shards, build the module, train 20 steps (batch 64, the small CNN at 16 px); each in a fresh process:
   the peak above the process's start (torch imported) and the process's own peak, with malloc's mmap
   threshold fixed (what the computation allocates) and with glibc's defaults (what a user's process
   sees: the target's measure).

    python benchmarks/bench_shards.py [--n 64] [--repeats 3] [--samples 1000000] [--scale-only]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _measure import _status_kib, best_seconds, machine, peak_rss_mib, run_isolated
from bench_loading import SIZES, make_photos


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tiny_shards(folder: Path, samples: int, per_shard: int = 10_000) -> None:
    """``samples`` samples of an 8x8 PNG and a json (label, two tags) in shards of ``per_shard``."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    rng = np.random.default_rng(0)
    for shard in range(-(-samples // per_shard)):
        members = []
        for key in range(shard * per_shard, min(samples, (shard + 1) * per_shard)):
            fields = {"label": int(key % 10), "tags": f"t{rng.integers(1000)} t{rng.integers(1000)}"}
            members += [(f"{key:09d}.png", png), (f"{key:09d}.json", json.dumps(fields).encode())]
        write_tar(folder / f"s-{shard:06d}.tar", members)


def reading(args: argparse.Namespace) -> None:
    import webdataset as wds

    from clinfonce.data.files import FileImageLoader, decode_image, size_pair, to_array
    from clinfonce.data.shards import index_shards

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = make_photos(folder, args.n)
        shard = folder / "photos.tar"
        write_tar(shard, [(f"{name[:-4]}.jpg", (folder / name).read_bytes()) for name in names])
        index = index_shards([shard])
        order = np.random.default_rng(0).permutation(len(names))
        print("| size | reader | images/s per worker | vs files |")
        print("| --- | --- | ---: | ---: |")
        torch.set_num_threads(1)  # one data-loader worker
        for size in SIZES:
            files = FileImageLoader(folder, names, size)
            by_position = index.loader(size)

            def streamed(size: int = size) -> list[torch.Tensor]:
                out = []
                for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
                    image = decode_image(sample["jpg"], sample["__key__"], draft=(size, size))
                    out.append(torch.from_numpy(to_array(image, size_pair(size), 3, "center_crop")))
                return out

            passes = {
                "files (FileImageLoader), random order": lambda f=files: [f(int(i)) for i in order],
                "shards by position (ShardImageLoader), random order": lambda s=by_position: [
                    s(int(i)) for i in order
                ],
                "shards streamed (webdataset.WebDataset), in order": streamed,
            }
            for got, want in zip(
                passes["shards by position (ShardImageLoader), random order"](),
                passes["files (FileImageLoader), random order"](),
                strict=True,
            ):
                assert torch.equal(got, want)
            seconds = best_seconds(list(passes.values()), args.repeats)
            for label, took in zip(passes, seconds, strict=True):
                print(f"| {size} | {label} | {len(names) / took:.0f} | {seconds[0] / took:.2f}x |")


def metadata_pass(folder: Path) -> None:
    from clinfonce.data.shards import index_shards, shard_paths

    paths = shard_paths(str(folder))
    started = time.perf_counter()
    peak, index = peak_rss_mib(lambda: index_shards(paths))
    seconds = time.perf_counter() - started
    print(json.dumps({"samples": len(index.keys), "seconds": seconds, "peak_mib": peak}))


def training_memory(folder: Path) -> None:
    from clinfonce.config import load_config
    from clinfonce.data.loaders import train_loader
    from clinfonce.training.engine import input_normalisation
    from clinfonce.training.module import ContrastiveModule

    def run() -> int:
        config = load_config("shapes", {
            "data.name": "webdataset", "data.options": {"shards": [str(folder)], "image_size": 16, "test_fraction": 0},
            "clusters.source": "none", "method.name": "simclr", "model.width": 8, "optim.batch_size": 64,
        })  # fmt: skip
        dataset = config.data.load()
        rows = dataset.rows("train")
        module = ContrastiveModule(
            config,
            len(dataset),
            dataset.n_classes,
            16,
            **input_normalisation(config, dataset),
            image_input=dataset.image_input,
        )
        optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
        module.generator = torch.Generator()
        for step, (images, labels, batch_rows) in enumerate(train_loader(dataset, rows, 64, 0, 0)):
            views = module.augment(images, generator=module.generator).flatten(0, 1)
            from clinfonce.training.objectives import Batch

            loss, _ = module.objective(
                module.encoder, Batch(views, 64, 2, labels, batch_rows, module.cluster_ids[batch_rows])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == 19:
                break
        return len(dataset)

    peak, n = peak_rss_mib(run)
    print(json.dumps({"samples": n, "peak_mib": peak, "process_peak_mib": _status_kib("VmHWM") / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=64, help="JPEG photos for the reading comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--scale-only", action="store_true", help="only the metadata pass and the memory")
    parser.add_argument("--child", nargs=2, metavar=("TASK", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        {"index": metadata_pass, "train": training_memory}[args.child[0]](Path(args.child[1]))
        return
    print(f"machine: {machine()}\n")
    if not args.scale_only:
        reading(args)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        for folder, samples in ((small, 100_000), (large, args.samples)):
            folder.mkdir()
            tiny_shards(folder, samples)
        print(
            "\n| samples | metadata pass s | index: peak above start MiB | training: peak above start MiB "
            "| training: process peak MiB | same, malloc defaults: above start | process peak |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for folder in (small, large):
            index = run_isolated(__file__, "--child", "index", str(folder))
            train = run_isolated(__file__, "--child", "train", str(folder))
            plain = run_isolated(__file__, "--child", "train", str(folder), fixed_mmap_threshold=False)
            print(
                f"| {index['samples']:,} | {index['seconds']:.1f} | {index['peak_mib']:.0f} | "
                f"{train['peak_mib']:.0f} | {train['process_peak_mib']:.0f} | {plain['peak_mib']:.0f} | "
                f"{plain['process_peak_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
