"""Atomic writes: an output is complete or absent; a failed write leaves the old file and no debris."""

from __future__ import annotations

import os
import stat

import pytest

from clinfonce._io import atomic_open, atomic_write_with


def test_atomic_open_replaces_only_on_success(tmp_path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target) as handle:
        handle.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temporary file left


def test_atomic_write_with_gives_a_path_and_cleans_up(tmp_path) -> None:
    target = tmp_path / "out.npy"
    atomic_write_with(target, lambda tmp: tmp.write_bytes(b"data") and None)
    assert target.read_bytes() == b"data"

    def fail(tmp) -> None:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path  # beside the target, same suffix
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(target, fail)
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def test_outputs_get_the_usual_permissions(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "a.txt") as handle:
            handle.write("x")
        atomic_write_with(tmp_path / "b.txt", lambda tmp: tmp.write_text("y") and None)
    finally:
        os.umask(old)
    for name in ("a.txt", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # not mkstemp's 0600
