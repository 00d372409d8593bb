"""A corpus of hostile inputs, each driven through the command line (``clinfonce.cli.main``, in-process).

Every case ends in one of two documented ways:

- a user error: exit status 2 and exactly one line on stderr, without a traceback, naming the file, row,
  column, flag or key at fault;
- a counted skip: ``data check`` lists the bad file with its reason and counts it (exit status 1), while a
  strict load of the same data (any command that loads it without ``--skip-bad``) is a user error naming it.

Images that are odd but valid (palette, CMYK, 16-bit, float, alpha) must decode to the right 8-bit values.
Every CLI call runs under a time limit (:func:`hostile_inputs.time_limit`): nothing may hang.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hostile_inputs import (
    Result,
    WritesAMarker,
    assert_clean_stderr,
    assert_user_error,
    encoder_payload,
    image_table,
    run_cli,
    small_image_folder,
    write_bomb_png,
    write_csv,
    write_png_raw,
    write_rgb,
    write_truncated_jpeg,
)
from PIL import Image

from clinfonce.data.registry import load_dataset

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo is not available here")
needs_symlink = pytest.mark.skipif(not hasattr(os, "symlink"), reason="os.symlink is not available here")

#: Command-line flags naming 16 + 8 generated shapes images, for the commands that need a dataset but fail
#: before using it (not the training settings of tests/tiny_runs.py).
SHAPES_DATA_FLAGS = ["--dataset", "shapes", "--data-option", "n_train=16", "--data-option", "n_test=8"]


# --------------------------------------------------------------------------------------------- helpers


def table_with(tmp_path: Path, name: str, write: Callable[[Path], object]) -> tuple[Path, Path]:
    """A table of 8 good images plus, as its last row (row 8, a training image), the file ``name``
    written by ``write(path)``; returns ``(table, image root)``."""
    header, rows = image_table(tmp_path)
    root = tmp_path / "images"
    write(root / name)
    rows.append([name, "cat", "train", "red"])
    return write_csv(tmp_path / "meta.csv", header, rows), root


def data_check(capsys: pytest.CaptureFixture[str], table: Path, root: Path, *extra: str) -> Result:
    return run_cli(
        capsys, "data", "check", "--table", table, "--root", root, "--data-option", "image_size=8", *extra
    )


def strict_load(capsys: pytest.CaptureFixture[str], table: Path, root: Path, tmp_path: Path) -> Result:
    """A command that loads the table's dataset without --skip-bad (stage 1 on its attributes)."""
    out = tmp_path / "clusters.csv"
    result = run_cli(
        capsys,
        "clusters",
        "--dataset",
        "table",
        "--table",
        table,
        "--root",
        root,
        "--data-option",
        "image_size=8",
        "--attributes",
        "color",
        "--top-k",
        "1",
        "--out",
        out,
    )
    if result.status == 2:
        assert not out.exists()  # nothing half-written
    return result


def assert_listed(result: Result, name: str, reason: str, count: int = 1) -> None:
    """``data check`` listed ``name`` as a bad file with ``reason`` and counted it."""
    assert result.status == 1, (result.out, result.err)
    assert_clean_stderr(result)
    assert f"bad file: {name}: " in result.out, result.out
    line = next(line for line in result.out.splitlines() if line.startswith(f"bad file: {name}: "))
    assert reason in line, line
    assert f"{count} problem(s) found" in result.out, result.out


def assert_bad_file_case(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    write: Callable[[Path], object],
    reason: str,
) -> None:
    """The bad file is listed and counted by ``data check`` and stops a strict load naming table, row, file."""
    table, root = table_with(tmp_path, name, write)
    assert_listed(data_check(capsys, table, root), name, reason)
    assert_user_error(
        strict_load(capsys, table, root, tmp_path), str(table), "row 8", name, reason, "--skip-bad"
    )


def decoded(table: Path, root: Path, row: int = 8, channels: int = 3) -> np.ndarray:
    """The ``uint8 [C, H, W]`` the dataset's loader gives for ``row`` (what training and evaluation see)."""
    dataset = load_dataset("table", {"table": table, "root": root, "image_size": 8, "channels": channels})
    return dataset.loader(row).numpy()


def assert_decodes_to(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    write: Callable[[Path], object],
    rgb: tuple[int, int, int],
    grey: int | None = None,
) -> None:
    """The odd-but-valid image passes ``data check`` and decodes to ``rgb`` (and ``grey`` as one channel)."""
    table, root = table_with(tmp_path, name, write)
    result = data_check(capsys, table, root)
    assert result.status == 0, (result.out, result.err)
    assert_clean_stderr(result)
    assert "no problems found" in result.out
    pixels = decoded(table, root)
    assert pixels.shape == (3, 8, 8)
    np.testing.assert_allclose(pixels.reshape(3, -1).mean(axis=1), rgb, atol=1.01)
    if grey is not None:
        assert abs(float(decoded(table, root, channels=1).mean()) - grey) <= 1.01


# -------------------------------------------------------------------------------------------- bad files


def test_truncated_jpeg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_bad_file_case(capsys, tmp_path, "cut.jpg", write_truncated_jpeg, "truncated or corrupt image")


def test_zero_byte_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_bad_file_case(capsys, tmp_path, "empty.jpg", lambda p: p.write_bytes(b""), "empty file")


def test_text_file_named_jpg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(path: Path) -> None:
        path.write_text("name,color\nnot,an image\n")

    assert_bad_file_case(capsys, tmp_path, "notes.jpg", write, "not an image")


def test_decompression_bomb_is_refused_from_its_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 200000 x 200000 declared pixels (40 G): decoding it would need 120 GB; refused before any pixel.
    assert_bad_file_case(capsys, tmp_path, "bomb.png", write_bomb_png, "decompression bomb")


def test_decompression_bomb_below_pils_limit_is_refused_by_max_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, root = table_with(tmp_path, "wide.png", lambda p: write_rgb(p, size=64))
    result = data_check(capsys, table, root, "--data-option", "max_pixels=1000")
    assert_listed(result, "wide.png", "decompression bomb: the header declares 64x64 = 4096 pixels")


@needs_fifo
def test_fifo_in_an_image_folder_is_listed_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = small_image_folder(tmp_path / "folder")
    os.mkfifo(root / "a" / "pipe.png")  # nobody ever writes to it: opening it for reading would block
    result = run_cli(capsys, "data", "check", "--dataset", "imagefolder", "--root", root, timeout=20)
    assert_listed(result, "a/pipe.png", "not a regular file (a FIFO)")
    strict = run_cli(
        capsys, "clusters", "--dataset", "imagefolder", "--root", root, "--source", "labels", "--out",
        tmp_path / "c.csv", timeout=20,
    )  # fmt: skip
    assert_user_error(strict, "a/pipe.png", "FIFO")


@needs_symlink
def test_symlink_out_of_the_root_in_an_image_folder_is_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = small_image_folder(tmp_path / "folder")
    elsewhere = write_rgb(tmp_path / "elsewhere" / "kept.png", (1, 2, 3))
    os.symlink(elsewhere, root / "b" / "linked.png")
    result = run_cli(capsys, "data", "check", "--dataset", "imagefolder", "--root", root)
    assert result.status == 0 and "7 images" in result.out and "no problems found" in result.out, result
    clusters = tmp_path / "c.csv"
    result = run_cli(
        capsys, "clusters", "--dataset", "imagefolder", "--root", root, "--source", "labels", "--out", clusters,
    )  # fmt: skip
    assert result.status == 0, result
    assert "b/linked.png" in set(pd.read_csv(clusters)["path"])


@needs_symlink
def test_symlink_out_of_the_root_in_a_table_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = write_rgb(tmp_path / "elsewhere" / "private.png")
    table, root = table_with(tmp_path, "escape.png", lambda p: os.symlink(secret, p))
    assert_user_error(
        data_check(capsys, table, root), str(table), "row 8", "'escape.png'", "outside the image root"
    )


# -------------------------------------------------------------------------- odd but valid image files


def test_palette_png_decodes_to_its_colours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(path: Path) -> None:
        image = Image.new("P", (8, 8), 1)
        image.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
        image.save(path)

    assert_decodes_to(
        capsys,
        tmp_path,
        "palette.png",
        write,
        (10, 200, 30),
        grey=round(0.299 * 10 + 0.587 * 200 + 0.114 * 30),
    )


def test_palette_png_with_a_transparent_entry_is_composited_on_white(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(path: Path) -> None:
        image = Image.new("P", (8, 8), 1)
        image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
        image.save(path, transparency=1)  # palette entry 1 (red) fully transparent

    assert_decodes_to(capsys, tmp_path, "clear.png", write, (255, 255, 255), grey=255)


def test_rgba_png_alpha_is_composited_on_white(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(path: Path) -> None:
        # colour (200, 0, 0) at alpha 128: over white, 200*a + 255*(1-a) and 0*a + 255*(1-a)
        Image.new("RGBA", (8, 8), (200, 0, 0, 128)).save(path)

    a = 128 / 255
    expected = (round(200 * a + 255 * (1 - a)), round(255 * (1 - a)), round(255 * (1 - a)))
    assert_decodes_to(capsys, tmp_path, "alpha.png", write, expected)


def test_cmyk_jpeg_decodes_to_rgb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(path: Path) -> None:
        Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)  # pure red

    assert_decodes_to(capsys, tmp_path, "cmyk.jpg", write, (255, 0, 0))


def test_16bit_grey_png_mid_grey_decodes_to_128(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The bug: 32768 / 65535 (mid-grey) became 255 (white).
    def write(path: Path) -> None:
        write_png_raw(path, np.full((8, 8), 32768), bit_depth=16, color_type=0)

    assert_decodes_to(capsys, tmp_path, "grey16.png", write, (128, 128, 128), grey=128)


def test_16bit_rgb_png_decodes_to_8bit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(path: Path) -> None:
        pixel = [65535, 32768, 0]
        write_png_raw(path, np.tile(pixel, (8, 8)), bit_depth=16, color_type=2)

    assert_decodes_to(capsys, tmp_path, "rgb16.png", write, (255, 128, 0))


def test_float_tiff_in_the_unit_range_decodes_scaled_by_255(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(path: Path) -> None:
        Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F").save(path)

    assert_decodes_to(capsys, tmp_path, "grey.tif", write, (128, 128, 128), grey=128)


def test_float_tiff_outside_the_unit_range_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(path: Path) -> None:
        Image.fromarray(np.full((8, 8), 1000.0, dtype=np.float32), mode="F").save(path)

    assert_bad_file_case(capsys, tmp_path, "hdr.tif", write, "floating-point image")


# ------------------------------------------------------------------------------------------ table rows


def test_dotdot_path_in_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_rgb(tmp_path / "outside.png")
    table, root = table_with(tmp_path, "x.png", write_rgb)
    text = table.read_text().replace("\nx.png,", "\n../outside.png,")
    table.write_text(text)
    assert_user_error(
        data_check(capsys, table, root), str(table), "row 8", "'../outside.png'", "leaves the image root"
    )


def test_absolute_path_in_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = write_rgb(tmp_path / "outside.png")
    table, root = table_with(tmp_path, "x.png", write_rgb)
    table.write_text(table.read_text().replace("\nx.png,", f"\n{outside},"))
    assert_user_error(data_check(capsys, table, root), str(table), "row 8", str(outside), "is absolute")


def test_duplicate_paths_in_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # row 8 is "./0.png": the same image as row 0 once normalised
    table, root = table_with(tmp_path, "x.png", write_rgb)
    table.write_text(table.read_text().replace("\nx.png,", "\n./0.png,"))
    assert_user_error(data_check(capsys, table, root), str(table), "rows 0 and 8", "'0.png'", "column 'path'")


@pytest.mark.parametrize("link", ["hard link", pytest.param("symbolic link", marks=needs_symlink)])
def test_same_image_file_in_train_and_test_is_a_leak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str
) -> None:
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for label in ("a", "b"):
            for i in range(2):
                write_rgb(root / split / label / f"{i}.png", (10 * i, 100, 50))
    target = root / "train" / "a" / "0.png"
    copy = root / "test" / "a" / "same.png"
    if link == "hard link":
        os.link(target, copy)
    else:
        os.symlink(os.path.relpath(target, copy.parent), copy)
    result = run_cli(capsys, "data", "check", "--dataset", "imagefolder", "--root", root)
    assert_user_error(result, "train/a/0.png", "test/a/same.png", "same image file", "train", "test")


def test_nan_attribute_cells_are_counted_singletons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = image_table(
        tmp_path, extra={"material": ["wood", "NaN", "", "wood", "metal", "nan", "wood", "metal"]}
    )
    table = write_csv(tmp_path / "meta.csv", header, rows)
    out = tmp_path / "clusters.csv"
    result = run_cli(
        capsys, "clusters", "--table", table, "--attributes", "color,material", "--top-k", "2", "--out", out
    )
    assert result.status == 0, result.err
    assert_clean_stderr(result)
    provenance = json.loads(out.with_suffix(".json").read_text())["provenance"]
    assert provenance["n_missing_rows"] == 3  # "NaN", "" and "nan" (pandas reads all three as missing)


def test_empty_attribute_cells_are_counted_by_data_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = image_table(
        tmp_path, extra={"material": ["wood", "", "", "wood", "metal", "wood", "", "metal"]}
    )
    table = write_csv(tmp_path / "meta.csv", header, rows)
    result = data_check(capsys, table, tmp_path / "images", "--data-option", "attributes=color,material")
    assert result.status == 0, result.out  # a note, not a problem: those rows become singletons
    assert_clean_stderr(result)
    assert "note: material: 3 missing value(s)" in result.out
    assert "no problems found" in result.out


# ------------------------------------------------------------------------------------- table encodings


def test_latin1_csv_is_an_error_naming_line_and_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = image_table(tmp_path)
    rows[2][3] = "rouge-clair-é"
    table = write_csv(tmp_path / "meta.csv", header, rows, encoding="latin-1")
    line = assert_user_error(data_check(capsys, table, tmp_path / "images"), str(table), "line 4", "UTF-8")
    assert "encoding" in line  # says how to read it
    # ... and the option it names reads it
    result = data_check(capsys, table, tmp_path / "images", "--data-option", "encoding=latin-1")
    assert result.status == 0, (result.out, result.err)


@pytest.mark.parametrize(
    ("encoding", "bom"), [("utf-8", True), ("utf-16", False)], ids=["utf-8 BOM", "utf-16 BOM"]
)
def test_byte_order_mark_is_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str, bom: bool
) -> None:
    header, rows = image_table(tmp_path)
    table = write_csv(
        tmp_path / "meta.csv", header, rows, encoding=encoding, bom=bom
    )  # utf-16 writes its BOM
    result = data_check(capsys, table, tmp_path / "images")
    assert result.status == 0, (result.out, result.err)
    out = tmp_path / "c.csv"
    result = run_cli(
        capsys, "clusters", "--table", table, "--label-col", "label", "--source", "labels", "--out", out
    )
    assert result.status == 0, result.err
    # the first column is 'path', not '\ufeffpath'
    assert out.read_text().splitlines()[0] == "path,label,cluster"


def test_unknown_table_encoding_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(tmp_path)
    table = write_csv(tmp_path / "meta.csv", header, rows)
    result = data_check(capsys, table, tmp_path / "images", "--data-option", "encoding=klingon-8")
    assert_user_error(result, "data.options.encoding", "unknown text encoding 'klingon-8'")


def test_semicolon_delimited_csv_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(
        tmp_path, extra={"size": ["1,5", "2,0", "1,5", "2,0", "1,5", "2,0", "1,5", "2,0"]}
    )
    table = write_csv(tmp_path / "meta.csv", header, rows, sep=";")  # Excel in many locales: decimal commas
    result = data_check(capsys, table, tmp_path / "images", "--data-option", "attributes=color,size")
    assert result.status == 0, (result.out, result.err)
    assert "8 images" in result.out and "2 classes" in result.out


def test_misspelled_header_lists_the_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(tmp_path)
    table = write_csv(tmp_path / "meta.csv", ["pth", *header[1:]], rows)
    assert_user_error(
        data_check(capsys, table, tmp_path / "images"),
        str(table),
        "unknown column(s) 'path'",
        "did you mean 'pth'",
        "the table has: pth, label, split, color",
    )


def test_duplicate_column_in_the_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(tmp_path, extra={"color2": ["x"] * 8})
    table = write_csv(tmp_path / "meta.csv", [*header[:-1], "color"], rows)  # pandas would rename it color.1
    assert_user_error(
        data_check(capsys, table, tmp_path / "images"), str(table), "column 'color'", "columns 4 and 5"
    )


def test_empty_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "meta.csv"
    table.write_bytes(b"")
    (tmp_path / "images").mkdir()
    assert_user_error(data_check(capsys, table, tmp_path / "images"), str(table), "empty file")
    result = run_cli(
        capsys, "clusters", "--table", table, "--attributes", "color", "--out", tmp_path / "c.csv"
    )
    assert_user_error(result, str(table), "empty file")


def test_header_only_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_csv(tmp_path / "meta.csv", ["path", "label", "split", "color"], [])
    (tmp_path / "images").mkdir()
    assert_user_error(data_check(capsys, table, tmp_path / "images"), str(table), "no rows")
    result = run_cli(capsys, "stats", "--table", table, "--cluster-col", "color", "--label-col", "label")
    assert_user_error(result, str(table), "no rows")


# ------------------------------------------------------------------------------------ labels and sizes


def test_string_labels_with_stray_whitespace_are_one_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = image_table(tmp_path)
    for row in rows[1::4]:
        row[1] = f" {row[1]} "  # "dog, cat" style files: ' dog ' is the class dog
    table = write_csv(tmp_path / "meta.csv", header, rows)
    result = data_check(capsys, table, tmp_path / "images")
    assert result.status == 0, (result.out, result.err)
    assert "2 classes" in result.out, result.out
    dataset = load_dataset("table", {"table": table, "root": tmp_path / "images", "image_size": 8})
    assert dataset.class_names == ["cat", "dog"]


def test_single_class_cannot_be_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(tmp_path, n=6, classes=("cat",))
    table = write_csv(tmp_path / "meta.csv", header, rows)
    checkpoint = tmp_path / "encoder.pt"
    torch.save(encoder_payload(), checkpoint)
    result = run_cli(
        capsys, "eval", "--checkpoint", checkpoint, "--dataset", "table", "--table", table, "--root",
        tmp_path / "images", "--data-option", "image_size=16", "--out", tmp_path / "eval",
    )  # fmt: skip
    assert_user_error(result, "one class")


def test_one_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = image_table(tmp_path, n=1, classes=("cat",))
    table = write_csv(
        tmp_path / "meta.csv", [h for h in header if h != "split"], [[r[0], r[1], r[3]] for r in rows]
    )
    result = data_check(capsys, table, tmp_path / "images")
    assert result.status == 0 and "1 images (train 1, val 0, test 0), 1 classes" in result.out, result.out
    result = run_cli(
        capsys, "train", "--config", "table", f"data.options.table={table}",
        f"data.options.root={tmp_path / 'images'}", "data.options.split_col=auto", "data.options.image_size=16",
        "data.options.attributes=[color]",
        "clusters.top_k=1", "model.backbone=small", "model.width=4", "optim.batch_size=2",
        f"train.out={tmp_path / 'run'}", timeout=60,
    )  # fmt: skip
    assert_user_error(result, "the training split has 1 images", "optim.batch_size=2")
    checkpoint = tmp_path / "encoder.pt"
    torch.save(encoder_payload(), checkpoint)
    result = run_cli(
        capsys, "eval", "--checkpoint", checkpoint, "--dataset", "table", "--table", table, "--root",
        tmp_path / "images", "--data-option", "image_size=16", "--out", tmp_path / "eval",
    )  # fmt: skip
    assert_user_error(result, "needs labelled train and test images")


# ------------------------------------------------------------------------------------- config and flags


def test_yaml_config_with_a_python_object_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "evil.yaml"
    config.write_text("model: !!python/object:clinfonce.config.ModelConfig {backbone: resnet18}\n")
    result = run_cli(capsys, "train", "--config", config, "--print-config")
    assert_user_error(result, str(config), "python/object:clinfonce.config.ModelConfig", "line 1")
    assert result.out == ""


def test_yaml_config_with_a_python_apply_tag_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    result = run_cli(capsys, "train", "--config", config, "--print-config")
    assert_user_error(result, str(config), "python/object/apply:os.system")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.batch_size=0", "optim.batch_size must be >= 2, got 0"),
        ("optim.batch_size=-8", "optim.batch_size must be >= 2, got -8"),
        ("train.epochs=0", "train.epochs must be >= 1, got 0"),
        ("train.epochs=-3", "train.epochs must be >= 1, got -3"),
    ],
)
def test_zero_or_negative_batch_size_or_epochs_in_a_config(
    capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    assert_user_error(run_cli(capsys, "train", "--config", "shapes", override, "--print-config"), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        # the spec's own range check, named by the flag
        (
            ["clusters", "--table", "t.csv", "--attributes", "a", "--top-k", "-1", "--out", "c.csv"],
            "--top-k must be >= 1",
        ),
    ],
)
def test_zero_or_negative_flag_is_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert_user_error(run_cli(capsys, *args), message)


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_of_another_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "encoder.pt"
    torch.save(encoder_payload(backbone_written="small", backbone_claimed="resnet18"), checkpoint)
    result = run_cli(
        capsys, "eval", "--checkpoint", checkpoint, *SHAPES_DATA_FLAGS, "--out", tmp_path / "eval"
    )
    assert_user_error(result, str(checkpoint), "do not fit a resnet18 encoder")
    assert not (tmp_path / "eval").exists()


def test_truncated_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "encoder.pt"
    torch.save(encoder_payload(), checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    result = run_cli(
        capsys, "eval", "--checkpoint", checkpoint, *SHAPES_DATA_FLAGS, "--out", tmp_path / "eval"
    )
    assert_user_error(result, str(checkpoint), "not a loadable clinfonce checkpoint")


def test_checkpoint_with_a_pickle_payload_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    checkpoint = tmp_path / "encoder.pt"
    torch.save({**encoder_payload(), "extra": WritesAMarker(marker)}, checkpoint)
    result = run_cli(
        capsys, "eval", "--checkpoint", checkpoint, *SHAPES_DATA_FLAGS, "--out", tmp_path / "eval"
    )
    assert_user_error(result, str(checkpoint), "not a loadable clinfonce checkpoint")
    assert not marker.exists()
