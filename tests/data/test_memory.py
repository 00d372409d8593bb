"""returning_freed_memory: Arrow allocates from malloc inside the block, and its arrays outlive it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from clinfonce.data.memory import returning_freed_memory


def test_arrow_allocates_from_malloc_inside_the_block_and_its_arrays_outlive_it() -> None:
    previous = pa.default_memory_pool().backend_name
    system = pa.system_memory_pool()
    before = system.bytes_allocated()
    with returning_freed_memory():
        assert pa.default_memory_pool().backend_name == "system"
        column = pa.array([f"key-{i}" for i in range(10_000)])
    assert pa.default_memory_pool().backend_name == previous
    assert system.bytes_allocated() - before >= column.nbytes  # its buffers came from malloc's pool
    assert column[9_999].as_py() == "key-9999"
    del column
    assert system.bytes_allocated() == before  # and go back to it


def test_the_previous_pool_comes_back_after_an_error() -> None:
    previous = pa.default_memory_pool().backend_name
    with pytest.raises(RuntimeError), returning_freed_memory():
        raise RuntimeError("inside")
    assert pa.default_memory_pool().backend_name == previous
