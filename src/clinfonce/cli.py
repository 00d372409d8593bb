"""The ``clinfonce`` command line: parse, validate, call the library. No logic of its own lives here.

A user mistake (missing file, unknown column, bad value) ends with one line on stderr and exit status 2;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from clinfonce import __version__
from clinfonce.clusters.spec import PATH_RULES, SOURCES, ClusterSpec
from clinfonce.data.registry import DATASETS
from clinfonce.errors import InputError, RunStopped
from clinfonce.logs import quiet_lightning, show_progress

if TYPE_CHECKING:  # the heavy libraries are imported where a command needs them: `--help` stays fast
    import numpy as np
    import pandas as pd

EXIT_USER_ERROR = 2
#: Import names of the `train` extra (pyproject.toml): a loss-only install lacks them.
_TRAIN_EXTRA = (
    "torchvision",
    "lightning",
    "tensorboard",
    "matplotlib",
    "PIL",
    "omegaconf",
    "pyarrow",
    "tabulate",
)
#: Storage failures a user must fix (space, quota, file size limit, read-only file system).
_STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


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
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in _TRAIN_EXTRA:
            raise
        print(
            f"clinfonce {args.command}: error: this command needs the training extra ({error.name} is not "
            "installed): pip install 'clinfonce[train]'",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:
        print(f"clinfonce {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silence the interpreter's flush at exit
        return 0
    except OSError as error:
        if error.errno not in _STORAGE_ERRORS:
            raise
        # a full disk, a quota, a read-only file system: the file being written is left out, never torn
        print(f"clinfonce {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RunStopped as stopped:
        print(f"clinfonce {args.command}: {_one_line(stopped)}", file=sys.stderr)
        return stopped.exit_status
    except KeyboardInterrupt:
        print(f"clinfonce {args.command}: interrupted", file=sys.stderr)
        return 130


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
    _add_clusters(commands)
    _add_stats(commands)
    _add_data(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_embed(commands)
    _add_neighbours(commands)
    _add_compare(commands)
    _add_demo(commands)
    return parser


def _add_clusters(commands: argparse._SubParsersAction) -> None:
    defaults = ClusterSpec()
    p = commands.add_parser(
        "clusters",
        help="stage 1: turn a metadata table or a dataset into cluster ids (CSV + provenance JSON)",
        description="Stage 1. Cluster the rows of a metadata table (--table) or the images of a dataset "
        "(--dataset) by attribute combinations (--attributes and/or --tags with --top-k), by a class "
        "hierarchy (--hierarchy with --level), by K-means on feature vectors (--features with --k), by the "
        "labels, or from a clusters file. The flags are the fields of a config's 'clusters' section "
        "(--top-k is clusters.top_k): a config with the same settings gives the same clusters. Writes OUT "
        "(CSV with the path and label columns when known, then 'cluster') and OUT with suffix .json "
        "(provenance and cluster keys).",
        epilog="examples:\n"
        "  clinfonce clusters --table meta.csv --attributes color,material --top-k 3 --out clusters.csv\n"
        "  clinfonce clusters --table posts.csv --tags hashtags --top-tags 200 --top-k 20 --out c.csv\n"
        "  clinfonce clusters --table imgs.csv --label-col wnid --hierarchy wordnet --level 12 --out c.csv\n"
        "  clinfonce clusters --table imgs.csv --features emb.npy --k 100 --out c.csv\n"
        "  clinfonce clusters --dataset cub200 --root CUB_200_2011 --top-k 20 --out c.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--table",
        type=Path,
        default=None,
        help="metadata table (.csv, .tsv, .txt, .parquet); with --dataset, that dataset's 'table' option",
    )
    _add_dataset_arguments(p, required=False, table=False)
    p.add_argument(
        "--out", required=True, type=Path, help="output CSV; the provenance goes beside it (.json)"
    )
    p.add_argument(
        "--path-col",
        default=None,
        help="image path column to copy to the output (default: 'path' if present)",
    )
    p.add_argument(
        "--label-col",
        default=None,
        help="class of each row: copied to the output, used by --hierarchy and --source labels, and for "
        "the statistics (default with --dataset: the dataset's labels)",
    )
    p.add_argument(
        "--source",
        choices=SOURCES[:-1],
        default=None,
        help="where the clusters come from (default: implied by the flags below)",
    )
    source = p.add_argument_group("attributes and tags")
    source.add_argument(
        "--attributes", type=_names, default=None, metavar="COL[,COL...]", help="attribute columns"
    )
    source.add_argument(
        "--tags",
        type=_names,
        default=None,
        metavar="COL[,COL...]",
        help="tag columns (lists or delimited strings)",
    )
    source.add_argument(
        "--top-k",
        type=_positive_int,
        default=None,
        metavar="K",
        help=f"combine the K highest-entropy binary attributes (default {defaults.top_k})",
    )
    source.add_argument(
        "--top-tags",
        type=_positive_int,
        default=None,
        metavar="T",
        help="keep the T most frequent tags per tag column",
    )
    source.add_argument(
        "--tag-separator", default=None, help="tag delimiter (default: whitespace, comma, semicolon, bar)"
    )
    source.add_argument(
        "--bins",
        type=_bins,
        default=None,
        metavar="COL=SPEC[;COL=SPEC]",
        help="binning of numeric columns: a count of quantile bins (size=4) or edges (size=30:40:50)",
    )
    hierarchy = p.add_argument_group("class hierarchy")
    hierarchy.add_argument(
        "--hierarchy",
        default=None,
        metavar="PARENTS|wordnet",
        help="'wordnet' (class ids like n02084071, read from the WordNet 3.0 database) or a CSV with "
        "columns child,parent (one row per edge); with --dataset, default: the dataset's own",
    )
    hierarchy.add_argument(
        "--level",
        type=_non_negative_int,
        default=None,
        help=f"depth of the ancestor that names a cluster (root = 0; default {defaults.level})",
    )
    hierarchy.add_argument(
        "--path-rule",
        choices=PATH_RULES,
        default=None,
        help=f"root path of a class with several parents (default: {defaults.path_rule})",
    )
    hierarchy.add_argument(
        "--wordnet-dir",
        type=Path,
        default=None,
        help="WordNet database directory (default /usr/share/wordnet)",
    )
    kmeans = p.add_argument_group("K-means on features")
    kmeans.add_argument(
        "--features", type=Path, default=None, help=".npy file of [N, D] features, row i = table row i"
    )
    kmeans.add_argument(
        "--k", type=_positive_int, default=None, help=f"number of K-means clusters (default {defaults.k})"
    )
    kmeans.add_argument(
        "--spherical",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"cosine K-means on L2-normalised features (default {defaults.spherical})",
    )
    kmeans.add_argument("--seed", type=int, default=None, help=f"K-means seed (default {defaults.seed})")
    kmeans.add_argument(
        "--restarts",
        type=_positive_int,
        default=None,
        help=f"K-means restarts, the best kept (default {defaults.restarts})",
    )
    kmeans.add_argument(
        "--points-per-centroid",
        type=_positive_int,
        default=None,
        help="train the centroids on a random subsample of at most k x this many rows, then assign every "
        f"row (default {defaults.points_per_centroid})",
    )
    p.add_argument("--file", type=Path, default=None, help="a clusters CSV (from this command) to re-use")
    p.set_defaults(handler=_run_clusters)


def _add_dataset_arguments(p: argparse.ArgumentParser, required: bool, table: bool = True) -> None:
    p.add_argument(
        "--dataset",
        required=required,
        default=None,
        help="a registered dataset (options: clinfonce data options NAME): " + ", ".join(sorted(DATASETS)),
    )
    p.add_argument("--root", type=Path, default=None, help="the dataset's directory (its 'root' option)")
    if table:
        p.add_argument(
            "--table",
            type=Path,
            default=None,
            help="a metadata table of image paths (the 'table' option; implies --dataset table)",
        )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another dataset option, value as YAML, lists also as a,b (repeatable)",
    )


def _add_data(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("data", help="dataset tools (check, options)")
    data_commands = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    check = data_commands.add_parser(
        "check",
        help="validate a dataset without training",
        description="Load a dataset, open every image, and report images per split, classes, auxiliary "
        "columns and their missing values, and every unreadable file (truncated, empty, not an image, "
        "a decompression bomb, not a regular file) with its reason. Exit status: 0 when no file is "
        "unreadable (missing auxiliary values and unlabelled images are notes: stage 1 and evaluation "
        "handle them), 1 when some are, 2 for a usage error.",
    )
    _add_dataset_arguments(check, required=False)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=_run_data_check)
    options = data_commands.add_parser(
        "options",
        help="list a dataset's options with their types and defaults",
        description="The options a dataset takes (data.options in a config, --data-option KEY=VALUE on the "
        "command line), with their types, defaults and meaning.",
    )
    options.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help=", ".join(sorted(DATASETS)))
    options.set_defaults(handler=_run_data_options)
    p.set_defaults(handler=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USER_ERROR


def _run_data_options(args: argparse.Namespace) -> int:
    import dataclasses

    from clinfonce.typed import fields_of

    source = DATASETS[args.name]
    print(f"{args.name}: {source.summary}")
    rows = [
        (name, kind, "(required)" if default is dataclasses.MISSING else json.dumps(default), text)
        for name, kind, default, text in fields_of(source.options)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[3]
        )
    if source.reads_files:
        print("  (unreadable images: --skip-bad on the command line, data.skip_bad in a config)")
    return 0


def _run_data_check(args: argparse.Namespace) -> int:
    from clinfonce.data.check import dataset_summary

    dataset = _dataset_from_args(args, skip_bad=True)
    if dataset is None:
        raise InputError("name the dataset: --dataset NAME (or --table for a metadata table)")
    summary = dataset_summary(dataset)
    if args.json:
        print(json.dumps(summary))
    else:
        splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        print(f"{summary['dataset']}: {summary['images']} images ({splits}), {summary['classes']} classes")
        print(
            f"auxiliary: attributes {len(summary['attributes'])}, tags {len(summary['tags'])}, hierarchy {summary['hierarchy']}"
        )
        if summary["notes"]:
            print(f"notes: {summary['notes']}")
        for remark in summary["remarks"]:
            print(f"note: {remark}")
        for bad in summary["bad_files"]:
            print(f"bad file: {bad['path']}: {bad['reason']}")
        print("no problems found" if not summary["problems"] else f"{summary['problems']} problem(s) found")
    return 1 if summary["problems"] else 0


def _add_stats(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "stats",
        help="information-theoretic statistics of a clustering against labels",
        description="H(Z), H(T), H(Z|T), H(T|Z), I(Z;T) in bits, purity and cluster sizes of the clustering Z "
        "in one column of a table against the labels T in another.",
    )
    p.add_argument("--table", required=True, type=Path, help="table with a cluster column and a label column")
    p.add_argument("--cluster-col", required=True, help="cluster id column")
    p.add_argument("--label-col", required=True, help="downstream label column")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(handler=_run_stats)


def _add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="stage 1 + stage 2: train an encoder from a YAML config, then evaluate it",
        description="Train an encoder as the config says (dataset, clusters, model, method, optimiser, "
        "trainer), write the run directory (config, environment, clusters and their provenance, "
        "checkpoints, logs, encoder.pt), then evaluate it (linear probe and kNN on the test split) into "
        "metrics.json and report.md. KEY=VALUE arguments override the config (values are YAML; lists "
        "also as a,b).",
        epilog="examples:\n"
        "  clinfonce train --config shapes\n"
        "  clinfonce train --config shapes method.name=simclr train.epochs=5 train.out=runs/s\n"
        "  clinfonce train --config my.yaml train.out=runs/s --resume\n"
        "  clinfonce train --config cub200 data.options.root=/data/CUB_200_2011 --print-config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="NAME|PATH",
        help="a YAML config file, or the name of a bundled one: "
        + ", ".join(_bundled_configs())
        + " (default: the built-in defaults)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=0.1 train.epochs=20")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="continue an interrupted run (same config; train.epochs may grow): from CHECKPOINT, or without "
        "one from the run directory's newest loadable checkpoint (same as train.resume=auto)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run already in train.out (it is deleted)"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave unreadable images out (listed in the run's skipped.csv) instead of stopping at the first",
    )
    p.set_defaults(handler=_run_train)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="linear probe and kNN accuracy of a trained encoder",
        description="Evaluate a run directory, its encoder.pt, or one of its Lightning checkpoints: frozen "
        "backbone features, a linear probe (settings chosen on a validation split) and weighted kNN, on "
        "the test split. The dataset defaults to the run's own (from its config.yaml).",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="run directory or checkpoint file")
    _add_dataset_arguments(p, required=False)
    p.add_argument(
        "--out", type=Path, default=None, help="directory for metrics.json and report.md (default: the run)"
    )
    p.set_defaults(handler=_run_eval)


def _add_embed(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "embed",
        help="write the embeddings of a dataset (.npy or Parquet), optionally a faiss index to search",
        description="Embed every image of the run's dataset (or --dataset) with a trained encoder: "
        "OUT/embeddings.npy (float32 [N, F], backbone features, or head outputs with --projection) or "
        "OUT/embeddings.parquet (the columns of index.csv plus an embedding column), and OUT/index.csv "
        "(row, path when known, label, class_name, split, cluster: the run's cluster of a training image), "
        "row i of one matching row i of the other. With --index, also OUT/faiss.index (cosine similarity) "
        "and OUT/index.json, for `clinfonce neighbours --index OUT`.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="run directory or checkpoint file")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    _add_dataset_arguments(p, required=False)
    p.add_argument("--split", choices=("all", "train", "val", "test"), default="all")
    p.add_argument(
        "--projection", action="store_true", help="projection-head outputs instead of backbone features"
    )
    p.add_argument(
        "--format", choices=("npy", "parquet"), default="npy", help="embeddings file (default npy)"
    )
    p.add_argument("--index", action="store_true", help="also write a faiss index (for clinfonce neighbours)")
    p.set_defaults(handler=_run_embed)


def _add_neighbours(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "neighbours",
        help="the nearest images of a query image in an index made by `clinfonce embed --index`",
        description="Embed --image with the index's encoder and preprocessing, and print its k nearest "
        "indexed images (cosine similarity, path, class, cluster); with --out, draw them.",
    )
    p.add_argument("--index", required=True, type=Path, help="a folder written by clinfonce embed --index")
    p.add_argument("--image", required=True, type=Path, help="the query image file")
    p.add_argument("-k", type=_positive_int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--out", type=Path, default=None, help="a PNG of the query and its neighbours")
    p.set_defaults(handler=_run_neighbours)


def _run_neighbours(args: argparse.Namespace) -> int:
    from clinfonce.retrieval import draw_neighbours, nearest_images

    found = nearest_images(args.index, args.image, args.k)
    columns = [
        c for c in ("rank", "similarity", "row", "path", "class_name", "cluster", "split") if c in found
    ]
    shown = found[columns].astype(object)
    print(shown.where(shown.notna(), "").to_string(index=False))
    if args.out is not None:
        draw_neighbours(args.out, args.image, found, args.index)
        print(f"wrote {args.out}")
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo",
        help="run the method end to end on the built-in shapes dataset (a few minutes on a CPU)",
        description="Generate the built-in shapes dataset (no download), cluster it by its auxiliary "
        "attributes, train SimCLR, Cl-InfoNCE and SupCon briefly, evaluate each with the same linear "
        "probe (a `clinfonce compare`), and write results.csv, report.md, accuracy.png and curves.png into --out.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs per method")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bars")
    p.set_defaults(handler=_run_demo)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare",
        help="methods x seeds x cluster settings, every run evaluated by the same probe",
        description="Train and evaluate every combination of methods, seeds and cluster settings, then write "
        "OUT/results.csv (one row per run), OUT/report.md (mean ± std over seeds) and plots. Finished runs "
        "are re-used when the command runs again, an interrupted comparison resumes, and a failed run is a "
        "row of the table, not the end of the comparison (exit status 1 when any failed). Take a compare "
        "file (--config) or say it with flags; flags override the file; KEY=VALUE overrides apply to every "
        "run.",
        epilog="examples:\n"
        "  clinfonce compare --config study.yaml\n"
        "  clinfonce compare --dataset imagefolder --root TRAIN --test-root TEST --clusters clusters.csv \\\n"
        "      --methods simclr,clinfonce,supcon --seeds 0,1 --epochs 15 --backbone small --image-size 32 \\\n"
        "      --out DIR\n"
        "  clinfonce compare --base shapes --sweep top_k=1,3,5 --methods simclr,clinfonce --seeds 0,1,2\n"
        "compare file (YAML): config, overrides, methods, seeds, settings (name -> clusters keys), sweep\n"
        "(one clusters key -> values), out; see the README.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="a compare file (YAML)")
    p.add_argument(
        "--base",
        default=None,
        metavar="NAME|PATH",
        help="the run config every run starts from (default: the dataset's bundled config, if any)",
    )
    _add_dataset_arguments(p, required=False)
    p.add_argument(
        "--test-root", type=Path, default=None, help="an image folder for the test split (imagefolder)"
    )
    p.add_argument(
        "--clusters",
        type=Path,
        default=None,
        help="a clusters CSV from `clinfonce clusters` (matched by path)",
    )
    p.add_argument(
        "--methods", type=_names, default=None, help="comma-separated, e.g. simclr,clinfonce,supcon"
    )
    p.add_argument("--seeds", type=_int_list, default=None, help="comma-separated training seeds, e.g. 0,1,2")
    p.add_argument(
        "--sweep",
        default=None,
        metavar="KEY=V1,V2",
        help="sweep one clusters key, e.g. top_k=1,3,5 or level=1,2",
    )
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs of every run")
    p.add_argument("--backbone", default=None, help="model.backbone of every run (small, resnet18, resnet50)")
    p.add_argument("--image-size", type=_positive_int, default=None, help="the dataset's image_size option")
    p.add_argument("--out", type=Path, default=None, help="output folder (default compare_out)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace runs in OUT/runs made with other settings"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config overrides for every run")
    p.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    import yaml

    from clinfonce.compare import load_spec, run_compare
    from clinfonce.compare.spec import check_spec

    spec = load_spec(args.config)
    name, options = _dataset_args(args)
    if args.test_root is not None:
        if name is None:
            raise InputError("--test-root needs --dataset (imagefolder)")
        options["test_root"] = str(args.test_root)
    base = args.base or spec.config or _bundled_for(name)
    if args.image_size is not None:
        options["image_size"] = args.image_size
    overrides = dict(spec.overrides)
    if name is not None:  # the data named by flags, with exactly the options the flags give
        overrides = {k: v for k, v in overrides.items() if not k.startswith("data.options.")}
        overrides |= {"data.name": name, "data.options": options}
    else:
        overrides |= {f"data.options.{key}": value for key, value in options.items()}
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.backbone is not None:
        overrides["model.backbone"] = args.backbone
    settings, sweep = dict(spec.settings), dict(spec.sweep)
    if args.clusters is not None:
        settings["file"] = {"source": "file", "file": str(args.clusters.absolute())}
    if args.sweep is not None:
        key, sep, values = args.sweep.partition("=")
        if not sep or not values:
            raise InputError(f"--sweep {args.sweep!r} must look like KEY=V1,V2 (e.g. top_k=1,3,5)")
        sweep = {key.strip(): [yaml.safe_load(v) for v in values.split(",")]}
    spec = check_spec(
        dataclasses.replace(
            spec,
            config=base,
            overrides=overrides,
            methods=args.methods or spec.methods,
            seeds=args.seeds if args.seeds is not None else spec.seeds,
            settings=settings,
            sweep=sweep,
            out=str(args.out) if args.out is not None else spec.out,
        )
    )
    quiet_lightning()
    results = run_compare(spec, args.overrides, overwrite=args.overwrite, verbose=True)
    failed = int((results["status"] != "ok").sum())
    out = Path(spec.out)
    print(
        f"wrote {out / 'results.csv'}, {out / 'report.md'}" + (f"; {failed} run(s) FAILED" if failed else "")
    )
    return 1 if failed else 0


def _bundled_for(dataset: str | None) -> str | None:
    """The bundled run config of a dataset, when there is one."""
    return dataset if dataset is not None and dataset in _bundled_configs() else None


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
    flags = [
        *(["data.skip_bad=true"] if args.skip_bad else []),
        *([f"train.resume={json.dumps(resume)}"] if resume else []),  # quoted: any path is a string
    ]
    config = load_config(args.config, [*overrides, *flags])
    if args.print_config:
        print(config_yaml(config), end="")
        return 0
    from lightning.pytorch.utilities import rank_zero_only

    from clinfonce.api import train
    from clinfonce.run import RunDir

    run = train(config, evaluate=not args.no_eval, overwrite=args.overwrite, verbose=True)
    if rank_zero_only.rank != 0:  # the other processes of a multi-process run stop after training
        return 0
    print(f"trained: {run.dir}")
    if run.metrics is not None:  # one evaluation per run, by global rank 0
        print(_metrics_line(run.metrics))
        print(f"report: {run.dir / RunDir.REPORT}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from clinfonce.evaluation.pipeline import evaluate_checkpoint

    dataset = _dataset_from_args(args)
    if dataset is not None and args.out is None:  # the run's report is about the run's own data
        raise InputError(
            "evaluating on a dataset given on the command line: say where the report goes (--out)"
        )
    metrics = evaluate_checkpoint(args.checkpoint, dataset=dataset, out_dir=args.out)
    print(_metrics_line(metrics))
    return 0


def _run_embed(args: argparse.Namespace) -> int:
    from clinfonce.retrieval import embed, require_pyarrow

    if args.format == "parquet":
        require_pyarrow()  # before the encoder and the dataset are loaded
    result = embed(
        args.checkpoint,
        _dataset_from_args(args),
        split=args.split,
        projection=args.projection,
        out=args.out,
        format=args.format,
        index=args.index,
    )
    rows, dim = result.vectors.shape
    print(f"wrote {', '.join(map(str, result.files))}: {rows} x {dim}")
    return 0


def _dataset_args(args: argparse.Namespace) -> tuple[str | None, dict]:
    """The dataset named by --dataset (or implied by --table) and its options from --root, --table and
    --data-option; ``(None, {})`` when none is named."""
    import yaml

    table = getattr(args, "table", None)
    name = args.dataset or ("table" if table is not None else None)
    options: dict = {}
    if args.root is not None:
        options["root"] = str(args.root)
    if table is not None:
        options["table"] = str(table)
    for item in args.data_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--data-option {item!r} must look like KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--data-option {item!r}: cannot parse the value") from None
    if name is None and options:
        raise InputError("--root, --table and --data-option need --dataset")
    return name, options


def _dataset_from_args(args: argparse.Namespace, skip_bad: bool = False):
    """The dataset the arguments name, loaded, or None (then the run's own is used)."""
    from clinfonce.data.registry import load_dataset

    name, options = _dataset_args(args)
    return None if name is None else load_dataset(name, options, skip_bad=skip_bad)


def _bundled_configs() -> list[str]:
    from clinfonce import configs

    return configs.names()


def _metrics_line(metrics: dict) -> str:
    parts = [f"{key}={value:.2f}" for key, value in metrics.items() if key.endswith("top1")]
    return f"{metrics.get('dataset')} / {metrics.get('method')}: " + "  ".join(parts)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from clinfonce.demo import DemoSettings, ordering_holds, run_demo

    quiet_lightning()
    settings = (
        DemoSettings() if args.epochs is None else dataclasses.replace(DemoSettings(), epochs=args.epochs)
    )
    started = time.perf_counter()
    results = run_demo(args.out, seeds=args.seeds, settings=settings, progress=args.progress, verbose=True)
    print("\nLinear-probe top-1 on the test split (%):")
    print(results[["method", "seed", "status", "top1", "knn20_top1", "train_seconds"]].to_string(index=False))
    holds = ordering_holds(results[results["status"] == "ok"])
    print(f"SimCLR < Cl-InfoNCE < SupCon: {'holds' if len(holds) and holds.all() else 'does NOT hold'} "
          f"({int(holds.sum())}/{len(holds)} seeds); total {time.perf_counter() - started:.0f} s")  # fmt: skip
    print(
        f"wrote {', '.join(str(args.out / name) for name in ('results.csv', 'report.md', 'accuracy.png', 'curves.png'))}"
    )
    return 0 if (results["status"] == "ok").all() else 1


def _run_clusters(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from clinfonce.clusters import build, build_for_dataset, cluster_stats
    from clinfonce.data.tables import check_writable, read_table, require_columns

    check_writable(args.out)  # before any work
    spec = _cluster_spec(args)
    if args.dataset is not None:
        dataset = _dataset_from_args(args)
        table = dataset.table
        assignment = build_for_dataset(spec, dataset)
        names = np.array([*dataset.class_names, None], dtype=object)
        labels = pd.Series(names[table["label"].to_numpy()], dtype=object)
        paths = table["path"] if "path" in table.columns else None
    elif args.table is not None:
        if args.root is not None or args.data_option:
            raise InputError("--root and --data-option need --dataset")
        table = read_table(args.table, tag_columns=spec.tags or ())
        path_col = args.path_col or ("path" if "path" in table.columns else None)
        require_columns(table, [c for c in (path_col, args.label_col) if c], args.table)
        labels = table[args.label_col] if args.label_col else None
        assignment = build(spec, table, classes=labels, name=str(args.table))
        paths = table[path_col] if path_col else None
    else:
        raise InputError("give --table (a metadata table) or --dataset (a registered dataset)")
    columns = {}
    if paths is not None:
        columns["path"] = paths.tolist()
    if labels is not None and (args.dataset is not None or args.label_col != args.path_col):
        columns["label"] = labels.tolist()
    json_path = assignment.save(args.out, columns=columns)
    print(f"{assignment.n} rows -> {assignment.n_clusters} clusters; wrote {args.out} and {json_path}")
    from clinfonce.clusters.stats import SAME_AS_LABELS_WARNING, clustering_warnings

    provenance = assignment.provenance or {}
    if provenance.get("method") == "attributes":
        print(f"attributes (by entropy): {', '.join(provenance['attributes'])}")
    stats = None
    if labels is not None:
        labelled = labels.notna().to_numpy()
        if labelled.any():
            stats = cluster_stats(assignment.ids[labelled], labels.to_numpy()[labelled])
    # one cluster over all rows; else, over the labelled rows, the same partition as the labels
    warnings = clustering_warnings(assignment.ids)
    if not warnings and stats is not None and stats.same_as_labels:
        warnings = [SAME_AS_LABELS_WARNING]
    for warning in warnings:
        print(f"warning: {warning}")
    if stats is not None:
        _print_stats(stats, warnings=False)
    return 0


def _cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    """The cluster specification the flags describe (unset flags keep :class:`ClusterSpec`'s defaults)."""
    implied = {
        "attributes": args.attributes is not None
        or args.tags is not None
        or (args.dataset is not None and args.top_k is not None),
        "hierarchy": args.hierarchy is not None or (args.dataset is not None and args.level is not None),
        "kmeans": args.features is not None,
        "file": args.file is not None,
    }
    chosen = [name for name, used in implied.items() if used]
    if args.source is None and len(chosen) != 1:
        raise InputError(
            "choose one source: --attributes/--tags, --hierarchy, --features, --file or --source labels"
            + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    flags = {
        "attributes": args.attributes,
        "tags": args.tags,
        "top_k": args.top_k,
        "top_tags": args.top_tags,
        "tag_separator": args.tag_separator,
        "bins": args.bins,
        "hierarchy": args.hierarchy,
        "level": args.level,
        "path_rule": args.path_rule,
        "wordnet_dir": None if args.wordnet_dir is None else str(args.wordnet_dir),
        "file": None if args.file is None else str(args.file),
        "k": args.k,
        "spherical": args.spherical,
        "seed": args.seed,
        "restarts": args.restarts,
        "points_per_centroid": args.points_per_centroid,
        "features": None if args.features is None else str(args.features),
    }
    given = {key: value for key, value in flags.items() if value is not None}
    spec = ClusterSpec(source=args.source or chosen[0], **given)
    return spec.check(lambda key: "--" + key.replace("_", "-"))


def _run_stats(args: argparse.Namespace) -> int:
    from clinfonce.clusters import cluster_stats
    from clinfonce.data.tables import read_table, require_columns

    table = read_table(args.table)
    require_columns(table, [args.cluster_col, args.label_col], args.table)
    stats = cluster_stats(table[args.cluster_col].to_numpy(), _labels(table, args.label_col, args.table))
    if args.json:
        print(json.dumps(stats.to_dict()))
    else:
        _print_stats(stats)
    return 0


def _labels(table: pd.DataFrame, column: str, source: Path) -> np.ndarray:
    import numpy as np

    labels = table[column]
    missing = labels.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"{source}: column {column!r} has {int(missing.sum())} missing value(s), "
            f"first at row {int(np.flatnonzero(missing)[0])}"
        )
    return labels.to_numpy()


def _print_stats(stats, warnings: bool = True) -> None:
    """The statistics, then ``warning:`` lines (unless the caller printed them) and ``note:`` lines."""
    print(
        f"n={stats.n}  clusters={stats.n_clusters}  labels={stats.n_labels}\n"
        f"H(Z)={stats.H_Z:.3f}  H(T)={stats.H_T:.3f}  H(Z|T)={stats.H_Z_given_T:.3f}  "
        f"H(T|Z)={stats.H_T_given_Z:.3f}  I(Z;T)={stats.I_Z_T:.3f} bits\n"
        f"purity={stats.purity:.3f}  singleton clusters={stats.singleton_fraction:.1%}  "
        f"cluster size p50={stats.size_percentiles['p50']:.0f} max={stats.size_percentiles['max']:.0f}"
    )
    severe = stats.warnings()
    if warnings:
        for warning in severe:
            print(f"warning: {warning}")
    for note in stats.recommendations():
        if note not in severe:
            print(f"note: {note}")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated column names")
    return names


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _bins(text: str) -> dict[str, int | list[float]]:
    """``size=4;weight=0:10:20`` -> ``{"size": 4, "weight": [0, 10, 20]}``."""
    bins: dict[str, int | list[float]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, spec = item.partition("=")
        try:
            bins[name.strip()] = [float(edge) for edge in spec.split(":")] if ":" in spec else int(spec)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad bin spec {item!r}; use COL=N or COL=E1:E2:E3") from None
    return bins


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
