"""The ``clinfonce`` command line: every command parses its flags, makes one library call and prints.

The flags of ``clusters`` are the fields of :class:`~clinfonce.clusters.ClusterSpec` and those of ``compare``
the fields of :class:`~clinfonce.compare.CompareSpec`, generated from the fields' own help. Every list flag
takes one comma-separated value (``--seeds 0,1,2``). A user mistake (missing file, unknown column, bad
value) ends with one line on stderr and exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from clinfonce import __version__
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.data.registry import DATASETS
from clinfonce.errors import InputError, user_failure
from clinfonce.flags import add_flags, given_fields, int_list, positive_int
from clinfonce.logs import quiet_lightning, show_progress

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clinfonce`` console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    show_progress()
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silence the interpreter's flush at exit
        return 0
    except BaseException as error:
        failure = user_failure(error)
        if failure is None:  # a bug: keep the traceback
            raise
        print(f"clinfonce {args.command}: {failure[0]}", file=sys.stderr)
        return failure[1]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``clinfonce CMD: error: ...``), exit status 2."""

    _intermixing = False

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        # A command's KEY=VALUE overrides may come before, between or after its options
        # (`train --config c a=1 --no-eval b=2`); argparse only mixes them when asked. The top-level parser
        # has sub-commands, which intermixed parsing does not support.
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = _Parser(
        prog="clinfonce",
        description="Weakly-supervised contrastive learning (Cl-InfoNCE): cluster images by their auxiliary "
        "information, then learn representations that keep each cluster together.",
    )
    parser.add_argument("--version", action="version", version=f"clinfonce {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_clusters, _add_stats, _add_data, _add_train, _add_eval, _add_embed, _add_neighbours):
        add(commands)
    _add_compare(commands)
    _add_demo(commands)
    return parser


def _command(commands, name: str, help: str, description: str = "", examples: Sequence[str] = ()):
    """A sub-command; its ``--help`` says ``help`` then ``description``, and lists ``examples``."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    formatter = argparse.RawDescriptionHelpFormatter if examples else argparse.HelpFormatter
    text = f"{help[0].upper()}{help[1:]}. {description}".strip()
    return commands.add_parser(name, help=help, description=text, epilog=epilog, formatter_class=formatter)


# ------------------------------------------------------------------------------------------- commands
def _add_clusters(commands) -> None:
    p = _command(
        commands,
        "clusters",
        "stage 1: cluster ids of a metadata table or a dataset (CSV + provenance JSON)",
        "With statistics against the labels. The flags are the fields of a config's clusters section "
        "(--top-k is clusters.top_k): the same settings give the same clusters.",
        [
            "clinfonce clusters --table meta.csv --attributes color,material --top-k 3 --out clusters.csv",
            "clinfonce clusters --table posts.csv --tags hashtags --top-tags 200 --top-k 20 --out c.csv",
            "clinfonce clusters --table imgs.csv --label-col wnid --hierarchy wordnet --level 12 --out c.csv",
            "clinfonce clusters --table imgs.csv --features emb.npy --k 100 --out c.csv",
            "clinfonce clusters --dataset cub200 --root CUB_200_2011 --top-k 20 --out c.csv",
        ],
    )
    _add_dataset_arguments(p)
    p.add_argument(
        "--out", required=True, type=Path, help="output CSV; the provenance goes beside it (.json)"
    )
    p.add_argument("--path-col", help="a table's image path column (default: 'path' if present)")
    p.add_argument("--label-col", help="a table's class column: for --hierarchy, --source labels, statistics")
    fields = add_flags(
        p.add_argument_group("stage 1 (the fields of a config's clusters section)"), ClusterSpec
    )
    p.set_defaults(handler=_run_clusters, spec_fields=fields)


def _run_clusters(args: argparse.Namespace) -> int:
    from clinfonce.clusters import cluster

    flag = lambda key: "--" + key.replace("_", "-")  # noqa: E731 -- how the user wrote a field
    spec = ClusterSpec.from_fields(
        given_fields(args, args.spec_fields), for_dataset=args.dataset is not None, name=flag
    )
    if args.dataset is None and args.table is None:
        raise InputError("give --table (a metadata table) or --dataset (a registered dataset)")
    if args.dataset is None and (args.root is not None or args.data_option):
        raise InputError("--root and --data-option need --dataset")
    data = args.table if args.dataset is None else _dataset_from_args(args)  # a table as it is, or a dataset
    result = cluster(spec, data, label_col=args.label_col, path_col=args.path_col, out=args.out)
    print("\n".join(result.summary_lines()))
    return 0


def _add_stats(commands) -> None:
    p = _command(
        commands, "stats", "H(Z), H(T), H(Z|T), H(T|Z), I(Z;T) (bits) of a cluster column vs a label column"
    )
    p.add_argument("--table", required=True, type=Path, help="table with a cluster column and a label column")
    p.add_argument("--cluster-col", required=True, help="cluster id column")
    p.add_argument("--label-col", required=True, help="downstream label column")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(handler=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    from clinfonce.clusters.stats import table_stats

    stats = table_stats(args.table, args.cluster_col, args.label_col)
    print(json.dumps(stats.to_dict()) if args.json else "\n".join(stats.summary_lines()))
    return 0


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(DATASETS))
    p.add_argument("--dataset", help=f"a registered dataset (options: clinfonce data options NAME): {names}")
    p.add_argument("--root", type=Path, help="the dataset's directory (its 'root' option)")
    p.add_argument("--table", type=Path, help="a metadata table of images (the 'table' option of table)")
    option = "another dataset option, value as YAML, lists also as a,b (repeatable)"
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE", help=option)


def _dataset_args(args: argparse.Namespace) -> tuple[str | None, dict]:
    """The dataset named by --dataset (or implied by --table) and its options from --root, --table and
    --data-option; ``(None, {})`` when none is named."""
    from clinfonce.data.registry import parse_options

    name = args.dataset or ("table" if args.table is not None else None)
    options = {
        key: str(value) for key, value in (("root", args.root), ("table", args.table)) if value is not None
    }
    options |= parse_options(args.data_option)
    if name is None and options:
        raise InputError("--root, --table and --data-option need --dataset")
    return name, options


def _dataset_from_args(args: argparse.Namespace, skip_bad: bool = False):
    """The dataset the arguments name, loaded, or None (then the run's own is used)."""
    from clinfonce.data.registry import load_dataset

    name, options = _dataset_args(args)
    return None if name is None else load_dataset(name, options, skip_bad=skip_bad)


def _add_data(commands) -> None:
    p = commands.add_parser("data", help="dataset tools (check, options)")
    data_commands = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    check = _command(
        data_commands,
        "check",
        "validate a dataset without training",
        "Open every image; report splits, classes, auxiliary columns, missing values (notes) and each "
        "unreadable file with its reason. Exit status 0: no unreadable file; 1: some; 2: a usage error.",
    )
    _add_dataset_arguments(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=_run_data_check)
    pack = _command(
        data_commands,
        "pack",
        "write a dataset as WebDataset tar shards",
        "Every image becomes KEY.<image> + KEY.json (label, split, every other column); shards of "
        "--shard-size samples per split, then manifest.json. Images are copied as they are, or re-encoded "
        "at --image-size. Read them back with data.name=webdataset data.options.shards=[OUT].",
        [
            "clinfonce data pack --table meta.csv --root images/ --out shards/",
            "clinfonce data pack --dataset imagefolder --root DIR --out shards/ --shard-size 5000",
            "clinfonce data pack --dataset fashion_mnist --out shards/",
        ],
    )
    _add_dataset_arguments(pack)
    pack.add_argument("--out", type=Path, required=True, help="a new or empty folder for the shards")
    pack.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    pack.add_argument("--image-size", type=int, help="re-encode every image at this size (default: copy)")
    pack.add_argument("--skip-bad", action="store_true", help="leave unreadable images out (counted)")
    pack.set_defaults(handler=_run_data_pack)
    options = _command(
        data_commands, "options", "a dataset's options (data.options, --data-option KEY=VALUE)"
    )
    options.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help=", ".join(sorted(DATASETS)))
    options.set_defaults(handler=_run_data_options)
    p.set_defaults(handler=lambda args: p.print_help() or EXIT_USER_ERROR)


def _run_data_options(args: argparse.Namespace) -> int:
    from clinfonce.data.registry import options_lines

    print("\n".join(options_lines(args.name)))
    return 0


def _run_data_pack(args: argparse.Namespace) -> int:
    from clinfonce.data.pack import pack_dataset
    from clinfonce.data.registry import load_dataset

    name, options = _dataset_args(args)
    if name is None:
        raise InputError("name the dataset: --dataset NAME (or --table for a metadata table)")
    if args.image_size is not None:
        options["image_size"] = args.image_size
    dataset = load_dataset(name, options, skip_bad=args.skip_bad)
    command = " ".join(["clinfonce", *sys.argv[1:]])
    result = pack_dataset(
        dataset,
        args.out,
        args.shard_size,
        reencode=args.image_size is not None,
        command=command,
        source={"name": name, "options": {k: str(v) for k, v in options.items()}},
    )
    manifest = result.manifest
    splits = ", ".join(f"{split} {n}" for split, n in manifest["splits"].items())
    skipped = f"; {len(dataset.skipped)} unreadable image(s) left out" if dataset.skipped else ""
    print(f"wrote {len(manifest['shards'])} shard(s) of {manifest['samples']} samples ({splits}) and "
          f"{result.out / 'manifest.json'}{skipped}")  # fmt: skip
    return 0


def _run_data_check(args: argparse.Namespace) -> int:
    from clinfonce.data.check import dataset_summary, summary_lines

    dataset = _dataset_from_args(args, skip_bad=True)
    if dataset is None:
        raise InputError("name the dataset: --dataset NAME (or --table for a metadata table)")
    summary = dataset_summary(dataset)
    print(json.dumps(summary) if args.json else "\n".join(summary_lines(summary)))
    return 1 if summary["problems"] else 0


def _add_train(commands) -> None:
    from clinfonce import configs

    p = _command(
        commands,
        "train",
        "stage 1 + stage 2: train an encoder from a YAML config, then evaluate it",
        "Writes the run directory, then metrics.json and report.md (linear probe and kNN on the test split). "
        "KEY=VALUE arguments override the config (values are YAML; lists also as a,b).",
        [
            "clinfonce train --config shapes",
            "clinfonce train --config shapes method.name=simclr train.epochs=5 train.out=runs/s",
            "clinfonce train --config my.yaml train.out=runs/s --resume",
            "clinfonce train --config cub200 data.options.root=/data/CUB_200_2011 --print-config",
        ],
    )
    configs = f"a YAML file or a bundled config: {', '.join(configs.names())}"
    p.add_argument("--config", metavar="NAME|PATH", help=configs)
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=0.1 train.epochs=20")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    resume = "continue an interrupted run (same config): from CHECKPOINT, or from the newest loadable one"
    p.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT", help=resume)
    p.add_argument("--overwrite", action="store_true", help="replace the run already in train.out")
    p.add_argument(
        "--skip-bad", action="store_true", help="leave unreadable images out (listed in skipped.csv)"
    )
    p.set_defaults(handler=_run_train)


def _looks_like_override(text: str) -> bool:
    """Whether ``text`` has the shape of a ``section.key=value`` override."""
    return re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+=.*", text, flags=re.DOTALL) is not None


def _run_train(args: argparse.Namespace) -> int:
    from clinfonce.config import config_yaml, load_config

    overrides, resume = list(args.overrides), args.resume
    if resume is not None and _looks_like_override(resume) and not Path(resume).exists():
        # `--resume KEY=VALUE ...`: a bare --resume followed by overrides; the one it took comes first of
        # those after it (later ones win)
        given_before = args.argv[: args.argv.index("--resume")] if "--resume" in args.argv else []
        overrides.insert(sum(map(_looks_like_override, given_before)), resume)
        resume = "auto"
    flags = [*(["data.skip_bad=true"] if args.skip_bad else [])]
    flags += [f"train.resume={json.dumps(resume)}"] if resume else []  # quoted: any path is a string
    config = load_config(args.config, [*overrides, *flags])
    if args.print_config:
        print(config_yaml(config), end="")
        return 0
    from lightning.pytorch.utilities import rank_zero_only

    from clinfonce.api import train

    run = train(config, evaluate=not args.no_eval, overwrite=args.overwrite, verbose=True)
    if rank_zero_only.rank == 0:  # the other processes of a multi-process run stop after training
        print(f"trained: {run.dir}")
        if run.metrics is not None:  # one evaluation per run, by global rank 0
            print(f"{_metrics_line(run.metrics)}\nreport: {run.files.path / run.files.REPORT}")
    return 0


def _metrics_line(metrics: dict) -> str:
    parts = [f"{key}={value:.2f}" for key, value in metrics.items() if key.endswith("top1")]
    return f"{metrics.get('dataset')} / {metrics.get('method')}: " + "  ".join(parts)


def _add_eval(commands) -> None:
    p = _command(
        commands,
        "eval",
        "linear probe and kNN accuracy of a trained encoder",
        "Of a run directory, its encoder.pt or a checkpoint: frozen backbone features, a linear probe (chosen "
        "on a validation split) and weighted kNN on the test split of the run's dataset (or --dataset).",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="run directory or checkpoint file")
    _add_dataset_arguments(p)
    p.add_argument("--out", type=Path, help="directory for metrics.json and report.md (default: the run)")
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from clinfonce.api import evaluate

    dataset = _dataset_from_args(args)
    if dataset is not None and args.out is None:  # the run's report is about the run's own data
        raise InputError(
            "evaluating on a dataset given on the command line: say where the report goes (--out)"
        )
    print(_metrics_line(evaluate(args.checkpoint, dataset, out=args.out, verbose=True)))
    return 0


def _add_embed(commands) -> None:
    from clinfonce.retrieval import EMBED_FORMATS, EMBED_SPLITS

    p = _command(
        commands,
        "embed",
        "embeddings of a dataset (.npy or Parquet) and optionally a faiss index to search",
        "OUT/embeddings.npy (or .parquet) and OUT/index.csv (row, path, label, class_name, split, cluster) of "
        "the run's dataset (or --dataset); --index adds faiss.index and index.json for `clinfonce neighbours`.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="run directory or checkpoint file")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    _add_dataset_arguments(p)
    p.add_argument("--split", choices=EMBED_SPLITS, default="all")
    p.add_argument("--projection", action="store_true", help="projection-head outputs, not backbone features")
    p.add_argument("--format", choices=EMBED_FORMATS, default="npy", help="embeddings file (default npy)")
    p.add_argument("--index", action="store_true", help="also write a faiss index (for clinfonce neighbours)")
    p.set_defaults(handler=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from clinfonce.retrieval import embed, require_pyarrow

    if args.format == "parquet":
        require_pyarrow()  # before the encoder and the dataset are loaded
    chosen = {key: getattr(args, key) for key in ("split", "projection", "out", "format", "index")}
    result = embed(args.checkpoint, _dataset_from_args(args), **chosen)
    print(f"wrote {', '.join(map(str, result.files))}: {result.vectors.shape[0]} x {result.vectors.shape[1]}")
    return 0


def _add_neighbours(commands) -> None:
    p = _command(
        commands, "neighbours", "the nearest images of a query in an index of `clinfonce embed --index`"
    )
    p.add_argument("--index", required=True, type=Path, help="a folder written by clinfonce embed --index")
    p.add_argument("--image", required=True, type=Path, help="the query image file")
    p.add_argument("-k", type=positive_int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--out", type=Path, help="a PNG of the query and its neighbours")
    p.set_defaults(handler=_run_neighbours)


def _run_neighbours(args: argparse.Namespace) -> int:
    from clinfonce.retrieval import NEIGHBOUR_COLUMNS, draw_neighbours, nearest_images

    found = nearest_images(args.index, args.image, args.k)
    shown = found[[c for c in NEIGHBOUR_COLUMNS if c in found]].astype(object)
    print(shown.where(shown.notna(), "").to_string(index=False))
    if args.out is not None:
        draw_neighbours(args.out, args.image, found, args.index)
        print(f"wrote {args.out}")
    return 0


def _add_compare(commands) -> None:
    from clinfonce.compare.settings import CompareSpec

    p = _command(
        commands,
        "compare",
        "methods x seeds x cluster settings, every run evaluated by the same probe",
        "OUT/results.csv, report.md and plots. Runs are re-used or resumed; a failed run is a row (exit status "
        "1). Flags override the compare file (YAML: config, overrides, methods, seeds, settings, sweep, out).",
        [
            "clinfonce compare --config study.yaml",
            "clinfonce compare --dataset imagefolder --root TRAIN --test-root TEST --clusters clusters.csv \\",
            "    --methods simclr,clinfonce,supcon --seeds 0,1 --epochs 15 --backbone small --image-size 32 --out DIR",
            "clinfonce compare --base shapes --sweep top_k=1,3,5 --methods simclr,clinfonce --seeds 0,1,2",
        ],
    )
    p.add_argument("--config", type=Path, metavar="FILE", dest="compare_file", help="a compare file (YAML)")
    fields = add_flags(p, CompareSpec, skip=("overrides", "settings"), flags={"config": "--base"})
    _add_dataset_arguments(p)
    p.add_argument("--test-root", type=Path, help="an image folder for the test split (imagefolder)")
    p.add_argument("--clusters", type=Path, help="a clusters CSV from `clinfonce clusters` (matched by path)")
    p.add_argument("--epochs", type=positive_int, help="training epochs of every run")
    p.add_argument("--backbone", help="model.backbone of every run (small, resnet18, timm/<model>, ...)")
    p.add_argument("--image-size", type=positive_int, help="the dataset's image_size option")
    p.add_argument(
        "--overwrite", action="store_true", help="replace runs in OUT/runs made with other settings"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config overrides for every run")
    p.set_defaults(handler=_run_compare, spec_fields=fields)


def _run_compare(args: argparse.Namespace) -> int:
    from clinfonce.compare import load_spec, run_compare, with_shortcuts

    name, options = _dataset_args(args)
    shortcuts = {key: getattr(args, key) for key in ("test_root", "epochs", "backbone", "image_size")}
    fields = {**shortcuts, **given_fields(args, args.spec_fields), "clusters_file": args.clusters}
    spec = with_shortcuts(load_spec(args.compare_file), dataset=name, data_options=options, **fields)
    quiet_lightning()
    results = run_compare(spec, args.overrides, overwrite=args.overwrite, verbose=True)
    failed = int((results["status"] != "ok").sum())
    out = Path(spec.out)
    print(
        f"wrote {out / 'results.csv'}, {out / 'report.md'}" + (f"; {failed} run(s) FAILED" if failed else "")
    )
    return 1 if failed else 0


def _add_demo(commands) -> None:
    p = _command(
        commands,
        "demo",
        "the method end to end on the built-in shapes dataset (a few minutes on a CPU)",
        "SimCLR, Cl-InfoNCE (attribute clusters) and SupCon on the generated shapes data, as a compare: "
        "results.csv, report.md, accuracy.png and curves.png in --out.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    seeds = "training seeds (default: 0)"
    p.add_argument("--seeds", type=int_list, nargs="+", default=[[0]], metavar="N[,N...]", help=seeds)
    p.add_argument("--epochs", type=positive_int, help="training epochs per method")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bars")
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from clinfonce.demo import DemoSettings, run_demo, summary_lines

    quiet_lightning()
    settings = (
        DemoSettings() if args.epochs is None else dataclasses.replace(DemoSettings(), epochs=args.epochs)
    )
    seeds = [seed for group in args.seeds for seed in group]  # 0,1,2 (and the older 0 1 2)
    started = time.perf_counter()
    results = run_demo(args.out, seeds=seeds, settings=settings, progress=args.progress, verbose=True)
    print("\n".join(summary_lines(results, args.out, time.perf_counter() - started)))
    return 0 if (results["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
