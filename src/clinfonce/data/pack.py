"""Write any dataset the project reads as WebDataset tar shards (``clinfonce data pack``).

Every image becomes one sample: ``KEY.<ext>`` (the image) and ``KEY.json`` (its ``label`` as the class name,
its ``split``, and every other column of the dataset's table; a missing value is ``null``). ``KEY`` is the
image's ``path`` without its extension, other dots of the file name replaced by ``_`` (WebDataset cuts the
key at the first dot); two paths with one key are an error naming both. Read back with ``data.name:
webdataset`` and ``data.options.shards`` the output folder, the samples keep their keys as ``path``, their
splits and their columns, so stage 1 makes the same clusters from the shards as from the source.

Images are copied as their files' bytes (a file-backed source) or written as PNG (an in-memory source, or
shards read by position: their bytes as they are). ``image_size`` re-encodes every image at that size
(the source's decoding and resize; JPEG quality 95 in colour, PNG in grayscale). Shards hold ``shard_size``
samples each, per split (``train-000000.tar``, ..., ``test-000000.tar``); every file is written to a
temporary name and renamed when complete, and ``manifest.json`` (counts per split and shard, classes,
columns, the source and the command) comes last, so a folder with a manifest is a complete pack.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from clinfonce._io import atomic_write_with, write_json
from clinfonce.data.dataset import SPLITS, ImageDataset, is_missing
from clinfonce.data.files import FileImageLoader
from clinfonce.data.shards import ShardImageLoader
from clinfonce.errors import InputError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_dataset` wrote: ``out`` (the folder), ``manifest`` (its content)."""

    out: Path
    manifest: dict[str, Any]


def sample_key(path: str) -> str:
    """The WebDataset key of an image path: without its extension, other dots of the name as ``_`` (a
    dataset without paths, such as the generated shapes: ``<name>-<row>``)."""
    folder, _, name = str(path).replace("\\", "/").rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = stem.replace(".", "_")
    return f"{folder}/{stem}" if folder else stem


def pack_dataset(
    dataset: ImageDataset,
    out: str | os.PathLike,
    shard_size: int = 1000,
    reencode: bool = False,
    command: str = "",
    source: Mapping[str, Any] | None = None,
) -> PackResult:
    """Write ``dataset`` as shards into the folder ``out`` (rules in the module docstring).

    Args:
        dataset: any loaded dataset.
        out: a new or empty folder.
        shard_size: samples per shard.
        reencode: write the images as the dataset's loader returns them (its ``image_size``), not their bytes.
        command: the command line, for the manifest.
        source: what the dataset was loaded from (name, options), for the manifest.

    Raises:
        InputError: ``out`` holds files; ``shard_size`` < 1; two images have one key.
    """
    if shard_size < 1:
        raise InputError(f"--shard-size must be >= 1, got {shard_size}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: not an empty folder; choose a new one for the shards")
    table = dataset.table
    if "path" in table.columns:
        keys = [sample_key(path) for path in table["path"].astype(str)]
    else:  # a generated dataset: its rows are its names
        keys = [f"{dataset.name}-{row:08d}" for row in range(len(table))]
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        if first.setdefault(key, row) != row:
            raise InputError(
                f"images {table['path'].iloc[first[key]]!r} and {table['path'].iloc[row]!r} have the same "
                f"sample key {key!r}; rename one"
            )
    out.mkdir(parents=True, exist_ok=True)
    columns = [c for c in table.columns if c not in ("path", "label", "split")]
    names = np.array([*dataset.class_names, None], dtype=object)
    shards: list[dict[str, Any]] = []
    for split in SPLITS:
        rows = np.flatnonzero(table["split"].to_numpy() == split)
        for number in range(math.ceil(len(rows) / shard_size)):
            chunk = rows[number * shard_size : (number + 1) * shard_size]
            name = f"{split}-{number:06d}.tar"
            atomic_write_with(
                out / name,
                lambda tmp, chunk=chunk: _write_shard(dataset, tmp, chunk, keys, columns, names, reencode),
            )
            shards.append({"name": name, "split": split, "samples": len(chunk)})
    counts = table["split"].value_counts()
    manifest = {
        "format": "webdataset: KEY.<image> + KEY.json (label, split and the table's other columns)",
        "samples": len(table),
        "splits": {split: int(counts.get(split, 0)) for split in SPLITS if counts.get(split, 0)},
        "classes": list(dataset.class_names),
        "columns": ["label", "split", *columns],
        "images": "re-encoded at the source's image size" if reencode else "the source's bytes",
        "shard_size": shard_size,
        "shards": shards,
        "source": dict(source or {"name": dataset.name}),
        "command": command,
        "read_with": {"data.name": "webdataset", "data.options.shards": [str(out)]},
    }
    write_json(out / MANIFEST, manifest)
    return PackResult(out, manifest)


def _write_shard(
    dataset: ImageDataset,
    path: Path,
    rows: np.ndarray,
    keys: list[str],
    columns: list[str],
    names: np.ndarray,
    reencode: bool,
) -> None:
    table = dataset.table
    labels = table["label"].to_numpy()
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for row in rows.tolist():
            data, extension = _image_bytes(dataset, row, reencode)
            fields = {"label": names[labels[row]], "split": table["split"].iloc[row]}
            fields |= {column: _plain(table[column].iloc[row]) for column in columns}
            _add(tar, f"{keys[row]}.{extension}", data)
            _add(tar, f"{keys[row]}.json", json.dumps(fields, ensure_ascii=False).encode("utf-8"))


def _image_bytes(dataset: ImageDataset, row: int, reencode: bool) -> tuple[bytes, str]:
    """The image of ``row`` as file bytes and their extension."""
    loader = dataset.loader
    if not reencode and isinstance(loader, FileImageLoader):
        path = loader.root / loader.paths[row]
        return path.read_bytes(), path.suffix.lower().lstrip(".") or "jpg"
    if not reencode and isinstance(loader, ShardImageLoader):
        return loader.read(row), loader.names[row].rsplit(".", 1)[-1]
    pixels = loader(row).numpy()  # uint8 [C, H, W]
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    if image.mode == "RGB" and reencode:
        image.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue(), "jpg"
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed: the same data packs to the same bytes
    tar.addfile(info, io.BytesIO(data))


def _plain(value: Any) -> Any:
    """A table cell as JSON: numpy scalars as Python numbers, arrays as lists, missing as None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if is_missing(value) or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["MANIFEST", "PackResult", "pack_dataset", "sample_key"]
