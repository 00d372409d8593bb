"""Dataset names -> sources. A :class:`Source` names its options class and its ``load``; options are typed
and validated (:func:`dataset_options`) before any file is opened, then ``load`` reads the data.

A source's module (and the libraries it needs) is imported only when the source is used, so listing the
datasets (``clinfonce --help``) costs nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinfonce.errors import InputError

if TYPE_CHECKING:
    from clinfonce.data.dataset import ImageDataset


@dataclass(frozen=True)
class Source:
    """A registered dataset source.

    Attributes:
        name: the dataset's name in configs and on the command line.
        module: the module of :mod:`clinfonce.data.sources` that reads it.
        options_class: the name of the source's options dataclass in ``module`` (:attr:`options`).
        loader: the name of its load function in ``module`` (:attr:`load`).
        reads_files: whether the source decodes image files, so that ``skip_bad`` applies to it.
        summary: one line: what the dataset is.
    """

    name: str
    module: str
    options_class: str
    loader: str
    reads_files: bool
    summary: str

    @property
    def options(self) -> type:
        """The source's options dataclass (fields with types, defaults and help)."""
        return getattr(importlib.import_module(f"clinfonce.data.sources.{self.module}"), self.options_class)

    @property
    def load(self) -> Callable[..., ImageDataset]:
        """``load(options)``, or ``load(options, skip_bad=...)`` for a source that reads image files."""
        return getattr(importlib.import_module(f"clinfonce.data.sources.{self.module}"), self.loader)


DATASETS: dict[str, Source] = {
    entry.name: entry
    for entry in (
        Source(
            "shapes",
            "shapes",
            "ShapesOptions",
            "load",
            False,
            "generated shapes x textures (12 classes) with noisy attributes; built in, made from a seed",
        ),
        Source(
            "imagefolder",
            "imagefolder",
            "ImageFolderOptions",
            "load",
            True,
            "an ImageFolder tree: <class>/<image>, optionally in train/ val/ test/ folders",
        ),
        Source(
            "webdataset",
            "webdataset",
            "WebDatasetOptions",
            "load",
            True,
            "WebDataset tar shards (key.jpg + key.json / .txt / .cls), indexed once, read by position",
        ),
        Source(
            "hf",
            "hf",
            "HfOptions",
            "load",
            True,
            "a Hugging Face dataset on disk: a save_to_disk folder or Parquet files with an image column",
        ),
        Source(
            "table",
            "table",
            "TableOptions",
            "load",
            True,
            "images listed in a metadata table (CSV, TSV, TXT, Parquet) with label, split and auxiliary columns",
        ),
        Source(
            "utzappos",
            "utzappos",
            "UtzapposOptions",
            "load",
            True,
            "UT-Zappos50K: 21 shoe sub-categories, binary meta-data attributes",
        ),
        Source(
            "utkface",
            "utkface",
            "UtkfaceOptions",
            "load",
            True,
            "UTKFace: face photos with per-image age, gender and race (age groups as labels by default)",
        ),
        Source(
            "cub200",
            "cub200",
            "Cub200Options",
            "load",
            True,
            "CUB-200-2011: 200 bird species, 312 binary attributes, the official split",
        ),
        Source(
            "wider",
            "wider",
            "WiderOptions",
            "load",
            True,
            "WIDER Attribute: 30 scene labels, 14 person attributes pooled per image",
        ),
        Source(
            "imagenet100",
            "imagenet100",
            "ImageNet100Options",
            "load",
            True,
            "a class subset of ImageNet given by a list of wnids, with the WordNet hierarchy",
        ),
        Source(
            "cifar10",
            "cifar",
            "CifarOptions",
            "load_cifar10",
            False,
            "CIFAR-10 (python pickles): 10 classes, no auxiliary information",
        ),
        Source(
            "cifar100",
            "cifar",
            "CifarOptions",
            "load_cifar100",
            False,
            "CIFAR-100 (python pickles): 100 classes; the 20 superclasses as auxiliary information",
        ),
        Source(
            "fashion_mnist",
            "fashion_mnist",
            "FashionMnistOptions",
            "load",
            False,
            "Fashion-MNIST (IDX files): 10 classes; a hand-made product taxonomy as auxiliary information",
        ),
        Source(
            "omniglot",
            "omniglot",
            "OmniglotOptions",
            "load",
            True,
            "Omniglot (zips): characters as labels; alphabet and drawer as auxiliary information",
        ),
    )
}


def source(name: str) -> Source:
    """The registered source ``name``; an unknown name is an :class:`InputError` with a "did you mean"."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(f"unknown dataset {name!r}{hint}; known: {', '.join(sorted(DATASETS))}")


def options_lines(name: str) -> list[str]:
    """What ``clinfonce data options NAME`` prints: the dataset's summary, then every option with its type,
    default and meaning, aligned."""
    import json

    from clinfonce.typed import fields_of

    src = source(name)
    rows = [
        (key, kind, "(required)" if default is dataclasses.MISSING else json.dumps(default), text)
        for key, kind, default, text in fields_of(src.options)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{name}: {src.summary}"]
    lines += [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    if src.reads_files:
        lines.append("  (unreadable images: --skip-bad on the command line, data.skip_bad in a config)")
    return lines


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["image_size=32", "classes=a,b"]`` -> ``{"image_size": 32, "classes": "a,b"}``: dataset options
    as the command line gives them (values read as YAML; lists also as ``a,b``, split by the options'
    types)."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--data-option {item!r} must look like KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--data-option {item!r}: cannot parse the value") from None
    return options


def dataset_options(name: str, values: Mapping[str, Any] | None = None, prefix: str = "data.options.") -> Any:
    """The typed, validated options of dataset ``name`` from plain ``values``; opens no file.

    Missing keys take their defaults; paths may be given as :class:`~pathlib.Path`.

    Args:
        name: a registered dataset.
        values: the options as the user gave them (a config's ``data.options``, ``--data-option``s).
        prefix: where ``values`` sit in what the user wrote, for messages.

    Raises:
        InputError: an unknown dataset or key (with a "did you mean"), a value of the wrong type or out of
            range, a required option left out; the message names the key as ``prefix + key``.
    """
    src = source(name)
    where = f"dataset {name!r}"
    values = dict(values or {})
    if "skip_bad" in values:
        raise InputError(
            f"{where}: {prefix}skip_bad is not a dataset option: skip_bad is how a run treats bad files "
            "(data.skip_bad in a config, --skip-bad on the command line)"
        )
    from clinfonce.data.options import OptionError
    from clinfonce.typed import from_mapping

    try:
        return from_mapping(src.options, values, where, prefix)
    except OptionError as error:
        raise InputError(f"{where}: {prefix}{error}") from None


def load_dataset(
    name: str, options: Mapping[str, Any] | Any | None = None, *, skip_bad: bool = False
) -> ImageDataset:
    """Load dataset ``name``.

    Args:
        name: a registered dataset.
        options: its options: a mapping (validated with :func:`dataset_options`), an instance of the
            source's options class, or ``None`` (every option at its default).
        skip_bad: leave unreadable images out (listed in ``ImageDataset.skipped``) instead of failing on the
            first one; sources that read no image file have nothing to skip and ignore it.

    Raises:
        InputError: unknown dataset or options, and whatever the source finds wrong with its files.
    """
    src = source(name)
    if options is None or isinstance(options, Mapping):
        options = dataset_options(name, options)
    elif not isinstance(options, src.options):
        given = type(options).__name__
        raise TypeError(f"dataset {name!r} takes {src.options.__name__} or a mapping, not {given}")
    from clinfonce.data.dataset import DataOrigin
    from clinfonce.typed import to_mapping

    metadata = getattr(options, "metadata", None)
    if metadata is not None:
        from clinfonce.data.metadata import join_metadata, read_metadata

        extra = read_metadata(metadata)  # before the images: a wrong table stops at once
    dataset = src.load(options, skip_bad=skip_bad) if src.reads_files else src.load(options)
    if metadata is not None:
        dataset = join_metadata(dataset, extra, metadata)
    dataset.origin = DataOrigin(name, to_mapping(options), skip_bad)
    return dataset
