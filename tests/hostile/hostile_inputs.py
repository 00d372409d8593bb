"""Builders of hostile inputs (images, tables, configs, checkpoints) and a guarded in-process CLI runner.

Everything is made in a temporary folder from a few bytes or a tiny array: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce.cli import main
from image_files import write_bomb_png  # noqa: F401 -- re-exported for the corpus

#: Seconds any one CLI call may take before the test fails (nothing may hang).
CLI_TIMEOUT = 30


class Hung(Exception):
    """A CLI call ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail with :class:`Hung` after ``seconds`` (SIGALRM: it also interrupts a blocking ``open``)."""
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - Windows
        yield
        return

    def expire(signum, frame):
        raise Hung(f"the command ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Result:
    status: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: object, timeout: int = CLI_TIMEOUT) -> Result:
    """``clinfonce ARGS`` in-process: the exit status (argparse's ``SystemExit`` included) and its output."""
    capsys.readouterr()  # drop anything printed before
    with time_limit(timeout):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return Result(int(status), captured.out, captured.err)


def _error_lines(result: Result) -> list[str]:
    """stderr without the progress lines (``checking 8 image files ...``): what the CLI said was wrong."""
    assert "Traceback" not in result.err, result.err
    return [line for line in result.err.strip().splitlines() if line.startswith("clinfonce ")]


def assert_user_error(result: Result, *needles: str) -> str:
    """Exit 2, exactly one error line on stderr (the last), no traceback, holding every needle; returns it."""
    assert result.status == 2, (result.status, result.out, result.err)
    errors = _error_lines(result)
    assert len(errors) == 1 and result.err.strip().splitlines()[-1] == errors[0], result.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def assert_clean_stderr(result: Result) -> None:
    assert _error_lines(result) == [], result.err


# ----------------------------------------------------------------------------------------------- images


def write_rgb(
    path: Path, color: tuple[int, int, int] = (40, 120, 200), size: int = 8, fmt: str | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format=fmt)
    return path


def write_noise_jpeg(path: Path, size: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    data = write_noise_jpeg(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_png_raw(path: Path, rows: np.ndarray, bit_depth: int, color_type: int) -> Path:
    """A PNG written byte by byte (PIL cannot write 16-bit RGB): ``rows`` is ``[H, W*channels]`` big-endian
    samples of ``bit_depth`` bits."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height = rows.shape[0]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    width = rows.shape[1] // channels
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + row.astype(dtype).tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


# ----------------------------------------------------------------------------------------------- tables


def write_csv(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    sep: str = ",",
    encoding: str = "utf-8",
    bom: bool = False,
) -> Path:
    """A delimited text table written by hand (no quoting: the cells are plain words)."""
    lines = [sep.join(header), *(sep.join("" if cell is None else str(cell) for cell in row) for row in rows)]
    data = ("\n".join(lines) + "\n").encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def image_table(
    folder: Path,
    n: int = 8,
    classes: Sequence[str] = ("cat", "dog"),
    extra: dict[str, Sequence[object]] | None = None,
) -> tuple[list[str], list[list[object]]]:
    """``n`` good images under ``folder/images`` and the header and rows of a table listing them
    (path, label, split, color; the last image of each class in the test split)."""
    header = ["path", "label", "split", "color"]
    rows: list[list[object]] = []
    for i in range(n):
        label = classes[i % len(classes)]
        write_rgb(folder / "images" / f"{i}.png", ((30 * i) % 256, 100, 50 if label == "cat" else 200))
        split = "test" if i >= n - len(classes) else "train"
        rows.append([f"{i}.png", label, split, "red" if i % 3 else "blue"])
    for name, values in (extra or {}).items():
        header.append(name)
        for row, value in zip(rows, values, strict=True):
            row.append(value)
    return header, rows


# ------------------------------------------------------------------------------------------ checkpoints


def encoder_payload(
    backbone_written: str = "small", backbone_claimed: str = "small", crop_size: int = 16
) -> dict:
    """What ``Encoder.save`` writes: the weights of a ``backbone_written`` encoder, with
    model settings that claim ``backbone_claimed``."""
    from clinfonce.config import ModelConfig
    from clinfonce.encoder import ENCODER_FORMAT
    from clinfonce.models import Network
    from clinfonce.typed import to_mapping

    encoder = Network(backbone_written, small_images=True, head_dim=8, width=4)
    model = to_mapping(ModelConfig(backbone=backbone_claimed, small_images=True, head_dim=8, width=4))
    return {
        "format": ENCODER_FORMAT,
        "state_dict": {k: v.detach().clone() for k, v in encoder.state_dict().items()},
        "feature_dim": encoder.feature_dim,
        "class_names": ["a", "b"],
        "model": model,
        "crop_size": crop_size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }


class WritesAMarker:
    """Unpickling this would create ``marker``: proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def small_image_folder(root: Path) -> Path:
    """An ImageFolder tree ``root/{a,b}/{0,1,2}.png`` of tiny RGB images."""
    for label in ("a", "b"):
        for i in range(3):
            write_rgb(root / label / f"{i}.png")
    return root
