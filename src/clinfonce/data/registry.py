"""Dataset names -> loader functions. Each loader returns an :class:`~clinfonce.data.dataset.ImageDataset`
and takes keyword arguments only (root directories, sizes, seeds), so configs and the CLI can pass them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from clinfonce.data.common import cifar10_dataset, cifar100_dataset, fashion_mnist_dataset, omniglot_dataset
from clinfonce.data.cub import cub200_dataset
from clinfonce.data.dataset import ImageDataset
from clinfonce.data.folder import imagefolder_dataset, table_dataset
from clinfonce.data.imagenet100 import imagenet100_dataset
from clinfonce.data.synthetic import shapes_dataset
from clinfonce.data.utzappos import utzappos_dataset
from clinfonce.data.wider import wider_dataset
from clinfonce.errors import InputError

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "shapes": shapes_dataset,
    "imagefolder": imagefolder_dataset,
    "table": table_dataset,
    "utzappos": utzappos_dataset,
    "cub200": cub200_dataset,
    "wider": wider_dataset,
    "imagenet100": imagenet100_dataset,
    "cifar10": cifar10_dataset,
    "cifar100": cifar100_dataset,
    "fashion_mnist": fashion_mnist_dataset,
    "omniglot": omniglot_dataset,
}


def load_dataset(name: str, **options: Any) -> ImageDataset:
    """Load dataset ``name`` with its source options; unknown names and options are :class:`InputError`.

    ``skip_bad`` is accepted for every dataset: sources without image files (generated, or arrays in a
    few files) have nothing to skip, and their loaders do not take it.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    loader = DATASETS[name]
    if "skip_bad" not in inspect.signature(loader).parameters:
        options.pop("skip_bad", None)
    try:
        return loader(**options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise InputError(f"dataset {name!r}: {error}") from error
        raise


def dataset_from_config(data: Mapping[str, Any]) -> ImageDataset:
    """The dataset a config's ``data`` section names: ``name``, its loader ``options`` and ``skip_bad``."""
    options = dict(data.get("options") or {})
    if data.get("skip_bad"):
        options["skip_bad"] = True
    return load_dataset(data["name"], **options)
