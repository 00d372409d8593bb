"""Image files: the checks of open_image / check_images, the loader's resize rules, the skip_bad policy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clinfonce.data.files import (
    FileImageLoader,
    check_image,
    check_images,
    decode_image,
    open_image,
    screen_files,
    size_pair,
)
from clinfonce.errors import InputError
from image_files import write_bomb_png

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo is not available here")


def write_png(path: Path, size: tuple[int, int] = (16, 12), seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_bad_files(folder: Path) -> dict[str, str]:
    """The bad files of the brief; name -> a word their reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "full.png", (64, 64))
    data = (folder / "full.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "full.png").unlink()
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG\n")
    write_bomb_png(folder / "bomb.png")
    expected = {
        "truncated.png": "truncated",
        "empty.png": "empty",
        "text.jpg": "not an image",
        "bomb.png": "decompression bomb",
    }
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.png")
        expected["fifo.png"] = "FIFO"
    return expected


def test_open_image_decodes_a_good_file(tmp_path: Path) -> None:
    path = write_png(tmp_path / "ok.png", (16, 12))
    image = open_image(path)
    assert image.size == (16, 12)
    assert np.asarray(image).shape == (12, 16, 3)


def test_check_images_lists_every_bad_file_with_its_reason(tmp_path: Path) -> None:
    expected = make_bad_files(tmp_path / "bad")
    write_png(tmp_path / "bad" / "good.png")
    paths = ["good.png", *sorted(expected), "missing.png"]
    bad = dict(check_images(tmp_path / "bad", paths, workers=2))
    assert set(bad) == {*expected, "missing.png"}
    for name, word in expected.items():
        assert word in bad[name], (name, bad[name])
    assert "no such file" in bad["missing.png"]
    assert [path for path, _ in check_images(tmp_path / "bad", paths, workers=1)] == paths[1:]


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("truncated.png", "truncated"),
        ("empty.png", "empty"),
        ("text.jpg", "not an image"),
        ("bomb.png", "decompression bomb"),
        pytest.param("fifo.png", "FIFO", marks=needs_fifo),
    ],
)
def test_open_image_raises_input_error_naming_the_file(tmp_path: Path, name: str, word: str) -> None:
    make_bad_files(tmp_path)
    with pytest.raises(InputError, match=word) as error:
        open_image(tmp_path / name)
    assert name in str(error.value)


def test_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    assert "directory" in check_image(tmp_path / "folder.png")


def test_max_pixels_is_checked_from_the_header(tmp_path: Path) -> None:
    path = write_png(tmp_path / "big.png", (64, 64))
    assert check_image(path) is None
    reason = check_image(path, max_pixels=100)
    assert "decompression bomb" in reason and "64x64" in reason


def test_pil_decompression_bomb_warning_is_an_error(tmp_path: Path) -> None:
    # Between PIL's limit and twice that, PIL only warns; with no limit of ours the warning still rejects.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    path = write_bomb_png(tmp_path / "warn.png", side, side)
    with pytest.raises(InputError, match="decompression bomb"):
        open_image(path, max_pixels=None)


def test_decode_image_from_bytes(tmp_path: Path) -> None:
    data = write_png(tmp_path / "a.png", (5, 7)).read_bytes()
    assert decode_image(data, "a.png").size == (5, 7)
    with pytest.raises(InputError, match=r"x\.png: empty"):
        decode_image(b"", "x.png")


def test_file_loader_center_crop_and_stretch(tmp_path: Path) -> None:
    # 40 wide, 20 high: left half black, right half white, and a red band in the leftmost 4 columns.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, 20:] = 255
    array[:, :4, 0] = 255
    Image.fromarray(array).save(tmp_path / "wide.png")
    crop = FileImageLoader(tmp_path, ["wide.png"], 10, channels=3)(0)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 10, 10)
    # shorter side 20 -> 10 (width 20), centre crop keeps columns 5..14 of 20: half black, half white,
    # and the red band (columns 0..1 after resizing) is cut away
    assert crop[:, :, 0].max() < 30 and crop[:, :, -1].min() > 225
    stretch = FileImageLoader(tmp_path, ["wide.png"], (10, 8), channels=3, resize="stretch")(0)
    assert stretch.shape == (3, 10, 8)
    # stretching keeps the whole width: the band is the first of 8 columns (4 of 40), red but not green
    assert stretch[0, :, 0].min() > 150 and stretch[1, :, 0].max() < 30  # (antialiasing blurs its edge)
    gray = FileImageLoader(tmp_path, ["wide.png"], 6, channels=1)(0)
    assert gray.shape == (1, 6, 6)
    # L = 0.299 R + 0.587 G + 0.114 B (PIL's convert): black and white halves
    assert gray[0, :, 0].max() < 30 and gray[0, :, -1].min() > 225


def _photo_jpeg(path: Path, size: tuple[int, int] = (200, 150)) -> Path:
    """A smooth colour gradient with a few edges (blocks of 60 px), saved as a JPEG (quality 90)."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    array = np.stack([x * 255 // size[0], y * 255 // size[1], ((x // 60 + y // 60) % 2) * 200], axis=2)
    Image.fromarray(array.astype(np.uint8)).save(path, quality=90)
    return path


@pytest.mark.parametrize("rule", ["center_crop", "stretch"])
@pytest.mark.parametrize("size", [(12, 12), (40, 30), (150, 150)])
def test_the_resize_is_pillows_bilinear_within_one_level(tmp_path: Path, rule: str, size) -> None:
    """Reference: Pillow's antialiased BILINEAR resize (+ centre crop), on the fully decoded image."""
    _photo_jpeg(tmp_path / "p.jpg")
    image = open_image(tmp_path / "p.jpg")
    height, width = size
    if rule == "stretch":
        expected = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None))
    else:
        scale = max(width / image.width, height / image.height)
        new = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        left, top = (new[0] - width) // 2, (new[1] - height) // 2
        resized = image.resize(new, Image.Resampling.BILINEAR)
        expected = np.asarray(resized.crop((left, top, left + width, top + height)))
    loader = FileImageLoader(tmp_path, ["p.jpg"], size, resize=rule, jpeg_draft=False)
    got = loader(0).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_jpeg_draft_decodes_small_but_never_below_the_target(tmp_path: Path) -> None:
    _photo_jpeg(tmp_path / "p.jpg", (400, 300))
    assert open_image(tmp_path / "p.jpg", draft=(32, 32)).size == (50, 38)  # 1/8: both sides still >= 32
    assert open_image(tmp_path / "p.jpg", draft=(120, 100)).size == (200, 150)  # 1/2 (1/4 would be 75 high)
    assert open_image(tmp_path / "p.jpg", draft=(300, 300)).size == (400, 300)  # no reduction possible
    write_png(tmp_path / "p.png", (64, 48))
    assert open_image(tmp_path / "p.png", draft=(8, 8)).size == (64, 48)  # only JPEGs have DCT scales
    full = FileImageLoader(tmp_path, ["p.jpg"], 32, jpeg_draft=False)(0).int()
    drafted = FileImageLoader(tmp_path, ["p.jpg"], 32)(0).int()
    assert drafted.shape == full.shape and (drafted - full).abs().float().mean() < 4  # the same picture


def test_a_truncated_jpeg_fails_with_draft_too(tmp_path: Path) -> None:
    data = _photo_jpeg(tmp_path / "p.jpg", (400, 300)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: truncated or corrupt image"):
        FileImageLoader(tmp_path, ["cut.jpg"], 32)(0)


def test_file_loader_converts_grayscale_to_rgb(tmp_path: Path) -> None:
    write_png(tmp_path / "g.png", (9, 9), mode="L")
    rgb = FileImageLoader(tmp_path, ["g.png"], 9, channels=3)(0)
    assert rgb.shape == (3, 9, 9)
    source = torch.from_numpy(np.asarray(Image.open(tmp_path / "g.png")))
    assert all(torch.equal(rgb[c], source) for c in range(3))  # each channel is the gray image


def test_file_loader_raises_on_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: empty file"):
        FileImageLoader(tmp_path, ["empty.png"], 8)(0)


def test_file_loader_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="channels"):
        FileImageLoader(tmp_path, [], 8, channels=2)
    with pytest.raises(InputError, match="resize"):
        FileImageLoader(tmp_path, [], 8, resize="pad")
    with pytest.raises(InputError, match="image_size"):
        size_pair(0)


def test_file_loader_pickles(tmp_path: Path) -> None:
    import pickle

    write_png(tmp_path / "a.png")
    loader = pickle.loads(pickle.dumps(FileImageLoader(tmp_path, ["a.png"], 4)))
    assert loader(0).shape == (3, 4, 4)


def test_screen_files_raises_on_the_first_bad_file_or_skips(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "c.jpg").write_text("no")
    paths = ["a.png", "b.png", "c.jpg"]
    with pytest.raises(InputError, match=r"meta\.csv: row 1: .*b\.png: empty file") as error:
        screen_files(tmp_path, paths, rows=[0, 1, 2], source="meta.csv")
    assert "skip_bad" in str(error.value)
    keep, skipped = screen_files(tmp_path, paths, skip_bad=True)
    assert keep.tolist() == [True, False, False]
    assert skipped == {"b.png": "empty file", "c.jpg": "not an image (PIL cannot identify it)"}
    keep, skipped = screen_files(tmp_path, paths, check=False)
    assert keep.all() and skipped == {}
    with pytest.raises(InputError, match="check_files"):
        screen_files(tmp_path, paths, skip_bad=True, check=False)


@needs_fifo
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX FIFOs")
def test_symlink_to_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.png").symlink_to(tmp_path / "pipe")
    assert "FIFO" in check_image(tmp_path / "link.png")
