"""What a comparison runs: a base run config, methods, seeds and cluster settings, as one typed object.

A compare file is YAML::

    config: shapes                  # the base run config: a bundled name or a path (or a mapping)
    overrides: {train.epochs: 20}   # applied to every run (dotted keys, as on the train command line)
    methods: [simclr, clinfonce, supcon]
    seeds: [0, 1, 2]
    settings:                       # named cluster settings (keys of the clusters section) ...
      alphabet: {source: hierarchy, level: 0}
      drawer: {source: attributes, attributes: [drawer], top_k: 20}
      soft: {tags: [hashtags], positives: tags}   # positives: method.positives (clinfonce only)
    sweep: {top_k: [1, 3, 5]}       # ... and/or one clusters key swept over values ("top_k=3")
    out: compare_out

A method that uses stage 1 (``clinfonce`` and the weakly-supervised baselines, see
:mod:`clinfonce.methods`) runs once per cluster setting and seed; the others once per seed. Without
settings and sweep, the base config's own ``clusters`` section is the one setting. A setting's
``positives`` key is ``method.positives``: one with ``positives: tags`` (soft positives from the tags the
setting names) runs only for the methods that take soft positives (``clinfonce``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clinfonce.clusters.spec import ClusterSpec
from clinfonce.compare.settings import CompareSpec
from clinfonce.config import Config, bundled_configs, load_config, parse_override
from clinfonce.errors import InputError
from clinfonce.methods import METHODS
from clinfonce.typed import from_mapping

#: Defaults of every compared run (a compare file's overrides may change them): one log line per epoch
#: instead of a progress bar.
RUN_DEFAULTS = {"train.progress_bar": False}
#: The one key of a cluster setting that is not a clusters key: ``method.positives``.
SETTING_POSITIVES = "positives"
_NO_CLUSTERS = {"clusters": {"source": "none"}}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison.

    Attributes:
        method: ``method.name``.
        setting: the cluster setting's name ("" for a method that uses no clusters).
        seed: ``train.seed``.
        config: the resolved run config (``train.out`` set).
        sweep_value: the swept key's value of this run's setting, or None.
    """

    method: str
    setting: str
    seed: int
    config: Config
    sweep_value: Any = None

    @property
    def name(self) -> str:
        """The run's folder name under ``OUT/runs``: ``method[-setting]-seedN``."""
        setting = "".join(c if c.isalnum() or c in "=._" else "_" for c in self.setting)
        return "-".join(part for part in (self.method, setting, f"seed{self.seed}") if part)


def load_spec(source: str | Path | Mapping[str, Any] | None) -> CompareSpec:
    """A compare file (path), a mapping, or None for the defaults; checked (methods, seeds, settings)."""
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: no such compare file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a compare file is a mapping (config, methods, seeds, ...)")
    return check_spec(from_mapping(CompareSpec, data, "compare"))


def check_spec(spec: CompareSpec) -> CompareSpec:
    """Raise :class:`InputError` naming the field at fault; returns ``spec``."""
    unknown = [m for m in spec.methods if m not in METHODS]
    if unknown or not spec.methods:
        raise InputError(f"compare: methods must be among {', '.join(METHODS)}, got {spec.methods}")
    if len(set(spec.methods)) != len(spec.methods) or len(set(spec.seeds)) != len(spec.seeds):
        raise InputError("compare: methods and seeds must not repeat")
    if not spec.seeds:
        raise InputError("compare: seeds must not be empty")
    flat = [key for key in spec.overrides if "." not in key]
    if flat:
        raise InputError(f"compare: overrides take dotted keys (train.epochs: 20), got {flat}")
    if len(spec.sweep) > 1:
        raise InputError(f"compare: sweep takes one clusters key, got {sorted(spec.sweep)}")
    keys = {f.name for f in dataclasses.fields(ClusterSpec)}
    for key, values in spec.sweep.items():
        if key not in keys:
            raise InputError(f"compare: sweep key {key!r} is not a clusters key ({', '.join(sorted(keys))})")
        if not isinstance(values, list) or not values:
            raise InputError(f"compare: sweep {key} must be a non-empty list of values")
    for name, setting in spec.settings.items():
        if not isinstance(setting, Mapping):
            raise InputError(f"compare: setting {name!r} must be a mapping of clusters keys")
    return spec


def with_shortcuts(
    spec: CompareSpec,
    *,
    dataset: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    test_root: str | Path | None = None,
    clusters_file: str | Path | None = None,
    epochs: int | None = None,
    backbone: str | None = None,
    image_size: int | None = None,
    **fields: Any,
) -> CompareSpec:
    """``spec`` with the command line's shortcuts applied (None: keep the spec's), checked.

    Args:
        spec: the comparison (e.g. a compare file's).
        dataset: the data of every run, with exactly ``data_options`` (the base config's other data
            options are dropped); the base config defaults to the dataset's bundled one, if any.
        data_options: options of that dataset (without ``dataset``: overrides of the base config's).
        test_root: an image folder for the test split (``imagefolder``).
        clusters_file: a clusters CSV (``clinfonce clusters``): a cluster setting named ``file``.
        epochs, backbone, image_size: ``train.epochs``, ``model.backbone`` and the dataset's ``image_size``
            of every run.
        fields: fields of :class:`CompareSpec` to replace (``methods``, ``seeds``, ``sweep``, ``out``,
            ``config``).
    """
    options = dict(data_options or {})
    if test_root is not None:
        if dataset is None:
            raise InputError("a test folder (test_root) needs the dataset named (imagefolder)")
        options["test_root"] = str(test_root)
    if image_size is not None:
        options["image_size"] = image_size
    overrides = dict(spec.overrides)
    if dataset is not None:  # the data named, with exactly the options given
        overrides = {k: v for k, v in overrides.items() if not k.startswith("data.options.")}
        overrides |= {"data.name": dataset, "data.options": options}
    else:
        overrides |= {f"data.options.{key}": value for key, value in options.items()}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if backbone is not None:
        overrides["model.backbone"] = backbone
    settings = dict(spec.settings)
    if clusters_file is not None:
        settings["file"] = {"source": "file", "file": str(Path(clusters_file).absolute())}
    given = {key: value for key, value in fields.items() if value is not None}
    # a swept key with one value is a sweep of one
    given["sweep"] = {k: v if isinstance(v, list) else [v] for k, v in given.get("sweep", spec.sweep).items()}
    base = given.pop("config", None) or spec.config
    if base is None and dataset is not None and dataset in bundled_configs():
        base = dataset
    return check_spec(dataclasses.replace(spec, **given, config=base, overrides=overrides, settings=settings))


def cluster_settings(spec: CompareSpec) -> list[tuple[str, dict[str, Any], Any]]:
    """``(name, clusters overrides, sweep value)`` of every cluster setting, named ones first."""
    settings = [(name, dict(values), None) for name, values in spec.settings.items()]
    for key, values in spec.sweep.items():
        settings += [(f"{key}={_text(value)}", {key: value}, value) for value in values]
    names = [name for name, _, _ in settings]
    if len(set(names)) != len(names):
        raise InputError(f"compare: cluster settings must have distinct names, got {names}")
    return settings


def plan(spec: CompareSpec, extra_overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run of the comparison, seeds outermost (a finished seed is a complete comparison), each
    config resolved now so a wrong setting stops the comparison before anything trains.

    Args:
        spec: the comparison.
        extra_overrides: ``KEY=VALUE`` overrides given on the command line, after ``spec.overrides``.
    """

    base = load_config(
        spec.config, {**RUN_DEFAULTS, **spec.overrides, **dict(map(parse_override, extra_overrides))}
    )
    settings = cluster_settings(spec) or [(describe_clusters(base.clusters), {}, None)]
    runs_dir = Path(spec.out).absolute() / "runs"
    planned: list[PlannedRun] = []
    for seed in spec.seeds:
        for method in spec.methods:
            uses_clusters = METHODS[method].needs_stage1
            for setting, clusters, value in settings if uses_clusters else [("", {}, None)]:
                clusters = dict(clusters)
                positives = clusters.pop(SETTING_POSITIVES, None)
                if positives == "tags" and not METHODS[method].soft_positives:
                    continue  # soft positives are a way of training clinfonce, not a clustering
                overrides = {
                    "method.name": method,
                    "train.seed": seed,
                    **({"method.positives": positives} if positives is not None else {}),
                    # a method without clusters records none (its run does not depend on the setting)
                    **(
                        {f"clusters.{key}": v for key, v in clusters.items()}
                        if uses_clusters
                        else _NO_CLUSTERS
                    ),
                }
                try:
                    config = load_config(base, overrides)
                except InputError as error:
                    where = f"{method}" + (f" with setting {setting!r}" if setting else "")
                    raise InputError(f"compare: {where}: {error}") from None
                run = PlannedRun(method, setting, seed, config, value)
                out = {"train.out": str(runs_dir / run.name)}
                planned.append(dataclasses.replace(run, config=load_config(config, out)))
    return planned


def describe_clusters(spec: ClusterSpec) -> str:
    """A short name of a clustering's main setting: ``top_k=3``, ``level=1``, ``k=100``, ``labels``, ..."""
    main = {"attributes": "top_k", "hierarchy": "level", "kmeans": "k", "tag_kmeans": "k"}.get(spec.source)
    if main is not None:
        return f"{main}={getattr(spec, main)}"
    if spec.source == "file":
        return f"file={Path(spec.file or '').name}"
    return spec.source


def _text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
