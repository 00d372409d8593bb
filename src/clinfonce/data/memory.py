"""Building a large index without keeping what the building freed.

A shard index of a million samples is built from thousands of short-lived pieces (each shard's keys,
positions and metadata, then their concatenation). Two allocators keep the memory those pieces freed:
pyarrow's default pool (mimalloc), which holds freed pages for reuse even after ``release_unused()``, and
glibc's malloc, whose heap returns only its top to the system when a block is freed. Measured on 1,000,000
tiny samples (``benchmarks/bench_shards.py``), they kept about 40 and 24 MiB that the index no longer used,
while training (which allocates elsewhere) needed it on top. :func:`returning_freed_memory` builds inside
malloc's pool and hands the freed pages back when the block ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def returning_freed_memory() -> Iterator[None]:
    """Inside the block, pyarrow allocates from the C library's malloc (the previous default pool comes
    back after it; a buffer frees through the pool it came from, so buffers outlive the block safely); at its
    end, free pages of malloc's heap go back to the system (glibc's ``malloc_trim``; elsewhere nothing).
    Without pyarrow installed only the trim happens."""
    try:
        import pyarrow
    except ModuleNotFoundError:
        pyarrow = None
    previous = pyarrow.default_memory_pool() if pyarrow else None
    if pyarrow:
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    try:
        yield
    finally:
        if pyarrow:
            pyarrow.set_memory_pool(previous)
        _trim_malloc_heap()


def _trim_malloc_heap() -> None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        trim = None
    if trim is not None:
        trim(0)


__all__ = ["returning_freed_memory"]
