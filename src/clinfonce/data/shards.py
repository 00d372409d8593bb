"""WebDataset tar shards: listed, indexed once, read by position.

A shard is a plain (uncompressed) tar file whose members are grouped into samples by *key*, WebDataset's
rule: a member ``dir/0001.jpg`` has the key ``dir/0001`` (the path up to the first dot of the file name) and
the extension ``jpg``; consecutive members with one key are one sample (what img2dataset and
``webdataset.ShardWriter`` write). Per sample:

- the image: the first of its ``jpg``, ``jpeg``, ``png``, ``webp`` members (extensions compared in lower
  case), decoded with the same loader and checks as image files (:func:`~clinfonce.data.files.decode_image`);
- metadata: every field of a ``json`` member (an object), the text of a ``txt`` member as ``caption``, and a
  ``cls`` member as ``label``; other members are ignored.

:func:`index_shards` reads each shard's tar headers once (its own scan of the basic 512-byte headers, six
times faster than :mod:`tarfile`, which reads the shards whose headers use extensions) and keeps, per sample, the
shard, the offset and the size of its image bytes, and parses the metadata members: no image is decoded.
:class:`ShardImageLoader` then reads one image with one ``pread`` at its offset (a worker process opens each
shard once). Reading by position keeps the project's sampler (every sample once per epoch over all
processes, exact resume in the middle of an epoch) for shards as for files: ``docs/benchmarks.md`` measures
it against WebDataset's streaming pipeline.

Gzipped shards (``.tar.gz``) cannot be read by position and are refused with a one-line hint.
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from pandas.api.types import union_categoricals

from clinfonce.data.files import DEFAULT_MAX_PIXELS, ImageFileError, decode_image, size_pair, to_array
from clinfonce.data.memory import returning_freed_memory
from clinfonce.errors import InputError

#: Image members, in the order a sample's image is chosen when it has several.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: Columns a shard's metadata fills from members other than the json: ``txt`` and ``cls``.
MEMBER_COLUMNS = {"txt": "caption", "cls": "label"}
_MAX_IMAGE_BYTES = 2**31 - 1  # the index keeps sizes as int32
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset's base_plus_ext


def shard_paths(spec: str | Sequence[str], what: str = "shards") -> list[Path]:
    """The shard files ``spec`` names: a brace pattern (``train-{000000..000099}.tar``), a glob, a folder
    (its ``.tar`` files, sorted), or a list of any of these.

    Raises:
        InputError: a named shard or folder does not exist, or nothing is found (naming ``what``).
    """
    try:
        import pyarrow  # noqa: F401  (the index's columns)
        from braceexpand import braceexpand
    except ModuleNotFoundError as missing:
        raise InputError(
            f"reading WebDataset shards needs {missing.name}: pip install 'clinfonce[webdataset]'"
        ) from None

    specs = [spec] if isinstance(spec, str) else list(spec)
    paths: list[Path] = []
    for item in specs:
        for expanded in braceexpand(str(item)):
            path = Path(expanded)
            if path.is_dir():  # hidden files are left out: a killed writer's temporaries among them
                paths.extend(sorted(p for p in path.glob("*.tar") if not p.name.startswith(".")))
            elif glob.has_magic(expanded):
                paths.extend(Path(p) for p in sorted(glob.glob(expanded)))
            elif path.is_file():
                paths.append(path)
            else:
                raise InputError(f"{what}: no such shard {expanded}")
    if not paths:
        raise InputError(f"{what}: {spec!r} names no .tar shard")
    for path in paths:
        if path.name.endswith((".gz", ".tgz", ".bz2", ".xz", ".zst")):
            raise InputError(f"{path}: a compressed shard cannot be read by position; store it as plain .tar")
    return paths


@dataclass
class ShardIndex:
    """Every sample of a list of shards: where its image is, and its metadata, in compact columns (a few
    dozen bytes per sample besides the metadata's own values: no Python object per sample).

    Attributes:
        shards: ``[S]`` the shard files.
        keys: ``[N]`` the sample keys (unique over all shards), in shard order: a pandas string array
            (Arrow-backed where pyarrow is installed).
        shard: ``int32 [N]`` the shard of each sample.
        offset: ``int64 [N]`` where its image bytes start in the shard.
        size: ``int32 [N]`` how many there are (an image member over 2 GiB is refused).
        extension: ``[N]`` its image member's extension (categorical; for messages).
        metadata: ``[N]`` rows: the json fields, ``caption`` and ``label`` of each sample (a field a
            sample lacks is missing).
        skipped: ``"shard:member" -> reason`` of what ``skip_bad`` left out (truncated shards, samples
            without an image).
    """

    shards: list[Path]
    keys: pd.api.extensions.ExtensionArray
    shard: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    extension: pd.Categorical
    metadata: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)

    def loader(
        self,
        image_size: int | tuple[int, int],
        channels: int = 3,
        resize: str = "center_crop",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        rows: np.ndarray | None = None,
    ) -> ShardImageLoader:
        """The image loader of the samples ``rows`` (default: all), in that order; all of them in index
        order share the index's columns instead of copying them."""
        rows = None if rows is None else np.asarray(rows)
        if rows is None or (len(rows) == len(self.keys) and (rows == np.arange(len(rows))).all()):
            columns = (self.shard, self.offset, self.size, self.keys, self.extension)
        else:
            columns = (
                self.shard[rows],
                self.offset[rows],
                self.size[rows],
                self.keys.take(rows),
                self.extension.take(rows),
            )
        return ShardImageLoader(
            [str(path) for path in self.shards],
            *columns,
            image_size,
            channels,
            resize,
            max_pixels,
        )


@returning_freed_memory()  # the per-shard pieces are freed once concatenated
def index_shards(paths: Sequence[Path], skip_bad: bool = False) -> ShardIndex:
    """Index the samples of ``paths`` (at least one shard; see the module docstring); reads tar headers and
    metadata members only, one shard at a time (what a shard's samples take as Python objects is freed
    before the next).

    Raises:
        InputError: a shard that is not a tar file, truncated, or with a sample without an image or with
            broken metadata (each naming the shard and the member), unless ``skip_bad`` leaves such samples
            out (listed in :attr:`ShardIndex.skipped`); a key in two samples (naming both places).
    """
    if not paths:
        raise InputError("no shard to index")
    skipped: dict[str, str] = {}
    keys, offsets, sizes, extensions, metadata = [], [], [], [], []  # one compact piece per shard
    for path in paths:
        shard_keys, shard_offsets, shard_sizes, shard_extensions, shard_metadata = [], [], [], [], []
        for key, image, fields in _samples(path, skip_bad, skipped):
            problem = (
                "no image member (jpg, jpeg, png or webp)"
                if image is None
                else f"an image member of {image.size:,} bytes (2 GiB at most)"
                if image.size > _MAX_IMAGE_BYTES
                else None
            )
            if problem:
                _refuse_or_skip(skip_bad, skipped, f"{path}:{key}", problem)
                continue
            shard_keys.append(key)
            shard_offsets.append(image.offset)
            shard_sizes.append(image.size)
            shard_extensions.append(_split_name(image.name)[1])
            shard_metadata.append(fields)
        keys.append(pd.Series(shard_keys, dtype="str"))
        offsets.append(np.asarray(shard_offsets, dtype=np.int64))
        sizes.append(np.asarray(shard_sizes, dtype=np.int32))
        extensions.append(pd.Categorical(shard_extensions))
        metadata.append(pd.DataFrame.from_records(shard_metadata, index=pd.RangeIndex(len(shard_keys))))
    shard = np.repeat(np.arange(len(paths), dtype=np.int32), [len(piece) for piece in keys])
    all_keys = pd.concat(keys, ignore_index=True)
    _refuse_duplicate_keys(all_keys, shard, paths)
    index = ShardIndex(
        shards=list(paths),
        keys=all_keys.array,
        shard=shard,
        offset=np.concatenate(offsets),
        size=np.concatenate(sizes),
        extension=union_categoricals(extensions),
        metadata=pd.concat(metadata, ignore_index=True),
        skipped=skipped,
    )
    return index


def _refuse_duplicate_keys(keys: pd.Series, shard: np.ndarray, paths: Sequence[Path]) -> None:
    """An :class:`InputError` naming the second place of the first key held by two samples."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # neighbours in sorted order: pandas' duplicated() and Arrow's hash kernels take ~200 bytes a key
    column = pa.array(keys.array)
    ordered = column.take(pc.sort_indices(column))
    if len(ordered) > 1 and pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py():
        repeated = keys.duplicated().to_numpy()
        second = int(np.argmax(repeated))
        key = keys.iloc[second]
        first = int(np.argmax((keys == key).to_numpy()))
        raise InputError(
            f"{paths[shard[second]]}:{key}: the key {key!r} is also a sample of {paths[shard[first]]}; "
            "keys must be unique"
        )


class Member(NamedTuple):
    """A regular file of a shard: its name, where its bytes start, and how many there are."""

    name: str
    offset: int
    size: int


def _samples(path: Path, skip_bad: bool, skipped: dict[str, str]):
    """``(key, image member or None, metadata)`` of each sample of one shard, in order. A truncated shard
    ends at its last complete sample (with ``skip_bad``; else it is an error)."""
    try:
        with open(path, "rb") as handle:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
    except OSError as error:
        raise InputError(f"{path}: cannot read the shard ({error.strerror or error})") from None
    try:
        members = _scan(data, path, skip_bad, skipped)
        if members is None:  # extended headers (long names): the standard library reads them
            members = _tarfile_members(path, len(data), skip_bad, skipped)
        key, group = None, []
        for member in members:
            name = _split_name(member.name)
            if name is None:
                continue  # a file without an extension: not part of a sample
            if group and name[0] != key:
                yield key, *_read_sample(data, path, key, group, skip_bad, skipped)
                group = []
            key = name[0]
            group.append(member)
        if group and str(path) in skipped:  # a shard cut off ends in a sample that may lack members
            skipped[f"{path}:{key}"] = "the shard is cut off after this sample's last member read"
        elif group:
            yield key, *_read_sample(data, path, key, group, skip_bad, skipped)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_EXTENDED = (b"x", b"g", b"L", b"K")  # pax and GNU long-name headers
_REGULAR = (b"0", b"\0", b"7")


def _scan(data, path: Path, skip_bad: bool, skipped: dict[str, str]) -> list[Member] | None:
    """The regular files of an uncompressed tar from its 512-byte headers (checksums verified), or None
    when a header needs more than the basic ustar fields (pax or GNU extensions, a name prefix, base-256
    sizes): :func:`_tarfile_members` reads those. Six times faster than :mod:`tarfile` per member, which
    is what takes the metadata pass of 1,000,000 samples under a minute (``benchmarks/bench_loading.py``).
    """
    members: list[Member] = []
    offset, end, previous = 0, len(data), None
    while True:
        header = data[offset : offset + _BLOCK]
        if len(header) < _BLOCK:
            after = f" after member {previous!r}" if previous else ""
            problem = "no end-of-archive marker" if offset == end else "a header is cut off"
            _refuse_or_skip(skip_bad, skipped, str(path), f"truncated shard{after}: {problem}")
            return members
        if header == _ZERO_BLOCK:
            return members
        typeflag, magic = header[156:157], header[257:262]
        if (
            typeflag in _EXTENDED
            or header[124] & 0x80
            or (magic == b"ustar" and header[345:500].strip(b"\0"))
        ):
            return None
        try:
            size = int(header[124:136].strip(b" \0") or b"0", 8)
            stored = int(header[148:156].strip(b" \0") or b"0", 8)
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None  # let tarfile judge (and name the problem)
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            if offset == 0:
                raise InputError(f"{path}: not a readable tar shard (bad header checksum)")
            _refuse_or_skip(
                skip_bad, skipped, str(path), f"corrupt shard: bad header after member {previous!r}"
            )
            return members
        start = offset + _BLOCK
        if typeflag in _REGULAR:
            if start + size > end:
                _refuse_or_skip(skip_bad, skipped, str(path), f"truncated shard: member {name!r} is cut off")
                return members
            members.append(Member(name, start, size))
        previous = name
        offset = start + -(-size // _BLOCK) * _BLOCK


def _tarfile_members(path: Path, file_size: int, skip_bad: bool, skipped: dict[str, str]) -> list[Member]:
    """The regular files of a shard as :mod:`tarfile` reads them, up to where it is cut off (recorded in
    ``skipped`` under the shard's path)."""
    members: list[Member] = []
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as error:
        raise InputError(f"{path}: not a readable tar shard ({error})") from None
    with tar:
        previous = None
        while True:
            try:
                member = tar.next()
            except (tarfile.TarError, OSError) as error:
                after = f" after member {previous!r}" if previous else ""
                _refuse_or_skip(skip_bad, skipped, str(path), f"truncated or corrupt shard{after} ({error})")
                return members
            if member is None:  # a complete shard closes with the end-of-archive marker (zero blocks)
                if file_size - tar.offset < _BLOCK:
                    after = f" after member {previous!r}" if previous else ""
                    _refuse_or_skip(
                        skip_bad, skipped, str(path), f"truncated shard{after}: no end-of-archive marker"
                    )
                return members
            if member.isfile():
                if member.offset_data + member.size > file_size:
                    _refuse_or_skip(
                        skip_bad, skipped, str(path), f"truncated shard: member {member.name!r} is cut off"
                    )
                    return members
                members.append(Member(member.name, member.offset_data, member.size))
            previous = member.name


def _read_sample(data, path: Path, key: str, members: list[Member], skip_bad: bool, skipped: dict):
    """The image member and the metadata of one sample's members (``data``: the shard's bytes)."""
    by_extension = {_split_name(m.name)[1].lower(): m for m in members}
    image = next((by_extension[e] for e in IMAGE_EXTENSIONS if e in by_extension), None)
    metadata: dict[str, Any] = {}

    def text(member: Member) -> str:
        return bytes(data[member.offset : member.offset + member.size]).decode("utf-8")

    try:
        if "json" in by_extension:
            fields = json.loads(text(by_extension["json"]))
            if not isinstance(fields, dict):
                raise ValueError(f"a json member must hold an object, got {type(fields).__name__}")
            metadata.update(fields)
        for extension, column in MEMBER_COLUMNS.items():
            if extension in by_extension:
                if column in metadata:
                    raise ValueError(f"{column!r} is both a json field and the {extension} member")
                metadata[column] = text(by_extension[extension]).strip()
    except (ValueError, UnicodeDecodeError) as error:
        _refuse_or_skip(skip_bad, skipped, f"{path}:{key}", f"bad metadata: {error}")
        return None, {}
    return image, metadata


def _split_name(name: str) -> tuple[str, str] | None:
    match = _KEY.match(name)
    return (match.group(1), match.group(2)) if match else None


def _refuse_or_skip(skip_bad: bool, skipped: dict[str, str], where: str, reason: str) -> None:
    if not skip_bad:
        raise InputError(f"{where}: {reason} (--skip-bad leaves such samples out, counted)")
    skipped[where] = reason


class ShardImageLoader:
    """``loader(row) -> uint8 [C, H, W]``: the image of sample ``row`` read from its shard by position
    (picklable; each process opens a shard once, on first use).

    Args:
        shards: ``[S]`` shard paths.
        shard, offset, size: ``[N]`` where each sample's image bytes are.
        keys, extensions: ``[N]`` each image member's key and extension, for error messages.
        image_size, channels, resize, max_pixels: as :class:`~clinfonce.data.files.FileImageLoader`.
    """

    def __init__(
        self,
        shards: Sequence[str],
        shard: np.ndarray,
        offset: np.ndarray,
        size: np.ndarray,
        keys: Sequence[str],
        extensions: Sequence[str],
        image_size: int | tuple[int, int],
        channels: int = 3,
        resize: str = "center_crop",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.shards, self.shard, self.offset, self.size = list(shards), shard, offset, size
        self.keys, self.extensions = keys, extensions
        self.image_size = size_pair(image_size)
        self.channels, self.resize, self.max_pixels = channels, resize, max_pixels
        self._files: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}  # descriptors do not travel to another process

    def read(self, row: int) -> bytes:
        """The image bytes of sample ``row``."""
        number = int(self.shard[row])
        fd = self._files.get(number)
        if fd is None:
            fd = self._files[number] = os.open(self.shards[number], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        data = os.pread(fd, int(self.size[row]), int(self.offset[row]))
        if len(data) != self.size[row]:
            raise ImageFileError(self._name(row), "truncated shard: the member is cut off")
        return data

    def __call__(self, row: int) -> torch.Tensor:
        name = self._name(row)
        height, width = self.image_size
        image = decode_image(self.read(row), name, self.max_pixels, (width, height))
        try:
            return torch.from_numpy(to_array(image, self.image_size, self.channels, self.resize, name))
        finally:
            image.close()

    def _name(self, row: int) -> str:
        return f"{self.shards[int(self.shard[row])]}:{self.keys[row]}.{self.extensions[row]}"


__all__ = ["IMAGE_EXTENSIONS", "ShardImageLoader", "ShardIndex", "index_shards", "shard_paths"]
