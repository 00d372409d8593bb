"""Reading image files safely: every user-data problem is an :class:`~clinfonce.errors.InputError`.

What counts as a bad file (each one is reported with its path and one of these reasons):

- missing (``no such file``), or not a regular file (a directory, FIFO, socket or device): checked with
  ``os.stat`` *before* anything is opened, so a FIFO can never block a reader; the file is then opened with
  ``O_NONBLOCK`` and checked again with ``fstat`` in case it was swapped in between;
- empty (0 bytes);
- not an image PIL can identify (e.g. a text file named ``.jpg``);
- a decompression bomb: the header declares more than ``max_pixels`` pixels (checked from the header,
  before any pixel is decoded), or PIL's own ``DecompressionBombWarning`` / ``DecompressionBombError``;
- truncated or corrupt: a full decode (``Image.load()``) fails.

Image loading (:class:`FileImageLoader`) converts to RGB (3 channels) or L (1 channel) and brings every
image to a fixed size, by one of two documented rules (``resize``):

- ``"center_crop"`` (default): scale so the *shorter* side equals the target side (bilinear, antialiased),
  then cut the centre; the aspect ratio is kept, the borders of the longer side are lost;
- ``"stretch"``: a plain resize to the target size; nothing is lost, the aspect ratio is not kept.

:func:`screen_files` is the ``skip_bad`` policy shared by every file-backed loader: by default the first bad
file (in table order) is an :class:`InputError` naming it; with ``skip_bad=True`` bad files are dropped and
returned as ``path -> reason`` for :attr:`ImageDataset.skipped <clinfonce.data.dataset.ImageDataset.skipped>`.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from clinfonce.errors import InputError

#: The default limit on declared pixels (PIL's own default limit, about 89.5 million).
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
RESIZE_RULES = ("center_crop", "stretch")
#: Paths checked per batch in :func:`check_images` (bounds the number of pending results).
_BATCH = 256
# ``warnings.catch_warnings`` changes process-wide state: serialise our use of it (header parsing only).
_WARNINGS_LOCK = threading.Lock()


def default_workers() -> int:
    """Threads used to check images: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


class ImageFileError(InputError):
    """A bad image file: ``str()`` is ``"<path>: <reason>"``; ``reason`` alone is kept for listings."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode one image file.

    Args:
        path: the image file.
        max_pixels: the largest ``width * height`` accepted (read from the header before decoding);
            ``None`` leaves only PIL's own limit.

    Returns:
        The decoded image (pixels loaded, the file closed).

    Raises:
        InputError: the file is missing, not a regular file, empty, not an image, a decompression bomb, or
            truncated / corrupt; the message names the path and the reason.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError as error:
        raise ImageFileError(path, "no such file") from error
    except OSError as error:
        raise ImageFileError(path, f"cannot stat: {error.strerror or error}") from error
    if not stat.S_ISREG(info.st_mode):
        raise ImageFileError(path, f"not a regular file ({_kind(info.st_mode)})")
    if info.st_size == 0:
        raise ImageFileError(path, "empty file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ImageFileError(path, f"cannot open: {error.strerror or error}") from error
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageFileError(path, f"not a regular file ({_kind(info.st_mode)})")
        return decode_image(handle, str(path), max_pixels)


def decode_image(
    source: BinaryIO | bytes, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode an image from an open binary file or from bytes, with the checks of :func:`open_image`.

    Args:
        source: a readable binary file object, or the file's bytes.
        name: the file name used in error messages.
        max_pixels: the largest ``width * height`` accepted; ``None`` leaves only PIL's own limit.

    Raises:
        InputError: empty, not an image, a decompression bomb, or truncated / corrupt.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageFileError(name, "empty file")
        source = io.BytesIO(source)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageFileError(name, f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageFileError(name, "not an image (PIL cannot identify it)") from error
    except Exception as error:  # a broken header can raise many types; all mean "bad file"
        raise ImageFileError(name, f"truncated or corrupt image header: {_describe(error)}") from error
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageFileError(
            name,
            f"decompression bomb: the header declares {width}x{height} = {width * height} pixels, "
            f"more than max_pixels={max_pixels}",
        )
    try:
        image.load()
    except Exception as error:  # truncated data, bad CRC, decoder errors, ...
        image.close()
        raise ImageFileError(name, f"truncated or corrupt image: {_describe(error)}") from error
    return image


def to_array(image: Image.Image, image_size: tuple[int, int], channels: int, resize: str) -> np.ndarray:
    """Convert a decoded image to ``uint8 [C, H, W]`` of ``image_size = (H, W)`` (rules in the module doc)."""
    image = image.convert("RGB" if channels == 3 else "L")
    height, width = image_size
    if resize == "stretch":
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
    else:
        scale = max(width / image.width, height / image.height)
        new_w = max(width, round(image.width * scale))
        new_h = max(height, round(image.height * scale))
        if (new_w, new_h) != image.size:
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - width) // 2, (new_h - height) // 2
        image = image.crop((left, top, left + width, top + height))
    array = np.asarray(image, dtype=np.uint8)  # read-only view of PIL's buffer
    if array.ndim == 2:
        array = array[:, :, None]
    out = np.empty((array.shape[2], height, width), dtype=np.uint8)  # one writable copy, [C, H, W]
    out[...] = array.transpose(2, 0, 1)
    return out


class FileImageLoader:
    """``loader(row) -> uint8 [C, H, W]``: decodes ``root / paths[row]`` (picklable, for worker processes).

    Args:
        root: the directory the paths are relative to.
        paths: one relative path per table row.
        image_size: side of the square output, or ``(H, W)``.
        channels: 3 (RGB) or 1 (grayscale, ``L``).
        resize: ``"center_crop"`` (shorter side to size, then centre crop) or ``"stretch"`` (plain resize).
        max_pixels: decompression-bomb limit (see :func:`open_image`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        paths: Sequence[str],
        image_size: int | tuple[int, int],
        channels: int = 3,
        resize: str = "center_crop",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        check_image_options(channels, resize)
        self.root = Path(root)
        self.paths = [str(path) for path in paths]
        self.image_size = size_pair(image_size)
        self.channels = channels
        self.resize = resize
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, row: int) -> torch.Tensor:
        image = open_image(self.root / self.paths[row], self.max_pixels)
        try:
            return torch.from_numpy(to_array(image, self.image_size, self.channels, self.resize))
        finally:
            image.close()


def check_image_options(channels: int, resize: str) -> None:
    """Raise :class:`InputError` unless ``channels`` is 1 or 3 and ``resize`` is a known rule."""
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels!r}")
    if resize not in RESIZE_RULES:
        raise InputError(f"unknown resize rule {resize!r}; choose one of {list(RESIZE_RULES)}")


def size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` from an int side or a pair; raises :class:`InputError` unless both are positive ints."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        pair = (int(image_size), int(image_size))
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        pair = (int(image_size[0]), int(image_size[1]))
    else:
        raise InputError(f"image_size must be an int or (height, width), got {image_size!r}")
    if min(pair) < 1:
        raise InputError(f"image_size must be positive, got {image_size!r}")
    return pair


def check_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """The reason ``path`` is a bad image (as in :func:`open_image`), or ``None`` when it is fine."""
    try:
        open_image(path, max_pixels).close()
    except ImageFileError as error:
        return error.reason
    return None


def check_images(
    root: str | os.PathLike,
    paths: Sequence[str],
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    stop_at_first: bool = False,
) -> list[tuple[str, str]]:
    """Open every image with the checks of :func:`open_image`; list the bad ones.

    It never blocks on special files (they are rejected by ``stat`` before any open) and its memory is
    bounded: threads decode one image each at a time, and paths are submitted in batches.

    Args:
        root: the directory the paths are relative to.
        paths: relative paths.
        workers: threads (PIL decoders release the GIL); ``None`` uses :func:`default_workers`.
        max_pixels: decompression-bomb limit.
        stop_at_first: return as soon as a batch holds a bad file (the first bad file is then certain).

    Returns:
        ``[(path, reason)]`` in the order of ``paths``.
    """
    root = Path(root)
    workers = default_workers() if workers is None else max(1, int(workers))
    bad: list[tuple[str, str]] = []

    def check(path: str) -> str | None:
        return check_image(root / path, max_pixels)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), _BATCH * workers):
            batch = [str(path) for path in paths[start : start + _BATCH * workers]]
            for path, reason in zip(batch, pool.map(check, batch), strict=True):
                if reason is not None:
                    bad.append((path, reason))
            if stop_at_first and bad:
                break
    return bad


def screen_files(
    root: str | os.PathLike,
    paths: Sequence[str],
    *,
    skip_bad: bool = False,
    check: bool = True,
    rows: Sequence[object] | None = None,
    source: str | None = None,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, dict[str, str]]:
    """The ``skip_bad`` policy of the file-backed loaders.

    Every file is opened up front (:func:`check_images`). By default the first bad file, in the order of
    ``paths``, is an :class:`InputError` naming it (and its row); with ``skip_bad=True`` the bad files are
    left out and reported.

    Args:
        root: the directory the paths are relative to.
        paths: relative paths, one per table row.
        skip_bad: drop bad files instead of failing.
        check: open every file now; ``False`` skips the up-front check (bad files then fail when loaded),
            which is not allowed together with ``skip_bad``.
        rows: what to call each path's row in messages (e.g. the metadata table's row numbers).
        source: the metadata file the rows come from, named in messages.
        workers: threads for the check.
        max_pixels: decompression-bomb limit.

    Returns:
        ``(bool [N] keep, {path: reason} of the dropped files)``.
    """
    keep = np.ones(len(paths), dtype=bool)
    if not check:
        if skip_bad:
            raise InputError("skip_bad=True needs the up-front file check (check_files=True)")
        return keep, {}
    bad = check_images(root, paths, workers=workers, max_pixels=max_pixels, stop_at_first=not skip_bad)
    if not bad:
        return keep, {}
    if not skip_bad:
        path, reason = bad[0]
        index = list(map(str, paths)).index(path)
        where = f"{source}: " if source else ""
        if rows is not None:
            where += f"row {rows[index]}: "
        raise InputError(f"{where}{Path(root) / path}: {reason} (pass skip_bad=True to leave bad files out)")
    skipped = dict(bad)
    keep = np.array([str(path) not in skipped for path in paths], dtype=bool)
    return keep, skipped


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
