"""Image files the tests of several folders build (importable: tests/conftest.py puts tests/ on the path)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image


def write_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid 8x8 PNG whose IHDR is patched (CRC fixed) to declare ``width x height`` pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (40, 120, 200)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path
