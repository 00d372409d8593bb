"""File helpers: atomic writes (an output is either complete or absent, never half-written) and safe
checkpoint reads (a checkpoint can never run code)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Part of the name of every temporary file :func:`atomic_open` and :func:`atomic_write_with` create; a
#: process killed mid-write leaves one behind, which :func:`remove_stale_temporaries` clears.
TEMP_MARKER = ".clinfonce-tmp-"


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; move it onto ``path`` only if the block succeeds.

    The rename is atomic on POSIX file systems, so readers (and a crash at any moment) see either the
    old file or the complete new one.
    """
    with _replacing(path, ".tmp") as (fd, _), os.fdopen(fd, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` for a library that insists on a path, then move it onto ``path``."""
    with _replacing(path, Path(path).suffix) as (fd, tmp):
        os.close(fd)
        write(tmp)


@contextmanager
def _replacing(path: str | os.PathLike, suffix: str) -> Iterator[tuple[int, Path]]:
    """A new temporary file beside ``path`` (its descriptor and path), moved onto ``path`` if the block
    succeeds and deleted if it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARKER}", suffix=suffix)
    _default_permissions(fd)
    try:
        yield fd, Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files that killed writers left in ``folder`` (not below it); returns how many.

    Only call this while no other process writes into ``folder`` (e.g. holding the run directory's lock).
    """
    removed = 0
    for path in Path(folder).glob(f".*{TEMP_MARKER}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _default_permissions(fd: int) -> None:
    """mkstemp creates files readable by the owner only; give them the usual 0666 & ~umask instead."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False, default=json_default)
        handle.write("\n")


def json_default(obj: Any) -> Any:
    # numpy scalars and arrays are common in provenance and metrics.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """A ``torch.save``-d dict, read with ``torch.load(weights_only=True)``: tensors and plain data only,
    never code. Anything else is an :class:`~clinfonce.errors.InputError` naming the file.

    ``mmap``: map the tensors instead of reading them, for a caller that only needs the plain data.
    """
    import torch

    from clinfonce.errors import InputError

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # any unpickling failure means: not a checkpoint we can trust
        raise InputError(f"{path}: not a loadable clinfonce checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict):
        raise InputError(f"{path}: not a clinfonce checkpoint")
    return payload
