"""Omniglot, read in memory straight from its zips.

Layout: ``images_background_small1.zip``, ... (every ``images_*.zip`` of the folder) holding
``<zip>/<Alphabet>/characterNN/<charid>_<drawer>.png``. Zips that share alphabets (Greek and Latin are in
both small zips) are de-duplicated by relative path.

- Label: the character (``"Greek/character01"``).
- Auxiliary information: the alphabet (attribute ``alphabet`` and hierarchy character -> alphabet) and the
  drawer (attribute ``drawer``, "01".."20": a real but semantically useless variable, the negative
  control).
- Split: there is no official split within a character, so drawers 1-15 are train and 16-20 test
  (``test_drawers``): every character is in both.
- The ``path`` column is the PNG's path inside the zips without the top folder
  (``"Greek/character01/0394_01.png"``): an identifier, since the images are decoded into memory.
- Every PNG is decoded with the checks of :func:`~clinfonce.data.files.decode_image`; a bad one is an error
  naming it, unless ``skip_bad`` leaves it out (listed in ``skipped``).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.files import (
    DEFAULT_MAX_PIXELS,
    SKIP_HINT,
    ImageFileError,
    decode_image,
    size_pair,
    to_array,
)
from clinfonce.data.in_memory import in_memory_dataset
from clinfonce.data.options import IMAGE_SIZE_HELP, InMemoryOptions
from clinfonce.errors import InputError

DEFAULT_DIR = Path("/work/shared/datasets/omniglot")
DIR_ENV = "CLINFONCE_OMNIGLOT_DIR"
TEST_DRAWERS = (16, 17, 18, 19, 20)
#: The largest uncompressed member read from an Omniglot zip (a guard against zip bombs).
MAX_MEMBER_BYTES = 16 * 1024 * 1024


@dataclass(kw_only=True)
class OmniglotOptions(InMemoryOptions):
    """Options of Omniglot."""

    root: str | None = field(
        default=None,
        metadata={
            "help": f"a folder of images_*.zip files, or one zip; null: ${DIR_ENV}, else {DEFAULT_DIR}"
        },
    )
    image_size: int = field(default=28, metadata={"help": IMAGE_SIZE_HELP})  # stored at 105x105
    test_drawers: list[int] = field(
        default_factory=lambda: list(TEST_DRAWERS),
        metadata={"help": "drawer numbers (1..20) whose drawings form the test split; the rest is train"},
    )
    max_pixels: int | None = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={"help": "decompression-bomb limit of one PNG, in pixels (null: only PIL's own)"},
    )


def load(options: OmniglotOptions, skip_bad: bool = False) -> ImageDataset:
    """Omniglot from its zips: character labels, alphabet and drawer as auxiliary information.

    Args:
        options: the zips, the image size, the splits (see :class:`OmniglotOptions`).
        skip_bad: leave PNGs that cannot be decoded out (listed in ``skipped`` by their ``path``) instead
            of failing on the first one.

    Raises:
        InputError: no zip, a member outside the layout, a bad PNG, duplicates that differ.
    """
    root = options.root
    base = Path(root) if root is not None else Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    zips = [base] if base.is_file() else sorted(base.glob("images_*.zip")) if base.is_dir() else []
    if not zips:
        raise InputError(f"{base}: no Omniglot zips (images_*.zip); pass root=<folder with the zips>")
    test_set = {int(d) for d in options.test_drawers}
    size = size_pair(options.image_size)
    seen: dict[str, tuple[str, int]] = {}
    rows, images = [], []
    skipped: dict[str, str] = {}
    for zip_path in zips:
        try:
            archive = zipfile.ZipFile(zip_path)
        except (OSError, zipfile.BadZipFile) as error:
            raise InputError(f"{zip_path}: not a readable zip: {error}") from error
        with archive:
            for member in sorted(archive.infolist(), key=lambda m: m.filename):
                if member.is_dir() or not member.filename.lower().endswith(".png"):
                    continue
                parts = member.filename.split("/")
                where = f"{zip_path}:{member.filename}"
                if len(parts) != 4 or "_" not in parts[3]:
                    raise InputError(f"{where}: not <top>/<Alphabet>/<character>/<charid>_<drawer>.png")
                relative = "/".join(parts[1:])
                if relative in seen:
                    if seen[relative][1] != member.CRC:
                        raise InputError(f"{where}: differs from the same path in {seen[relative][0]}")
                    continue
                seen[relative] = (str(zip_path), member.CRC)
                alphabet, character, file_name = parts[1:]
                char_id, drawer_text = file_name[:-4].rsplit("_", 1)
                if not drawer_text.isdigit():
                    raise InputError(f"{where}: the drawer {drawer_text!r} is not a number")
                if member.file_size > MAX_MEMBER_BYTES:
                    raise InputError(f"{where}: {member.file_size} bytes uncompressed, too large for a PNG")
                try:
                    data = archive.read(member)
                except (OSError, zipfile.BadZipFile, zlib.error) as error:
                    raise InputError(f"{where}: cannot read: {error}") from error
                try:
                    image = decode_image(data, where, options.max_pixels)
                    images.append(to_array(image, size, 1, "stretch", where)[0])
                except ImageFileError as error:
                    if not skip_bad:
                        raise InputError(f"{error} {SKIP_HINT}") from error
                    skipped[relative] = error.reason
                    continue
                drawer = int(drawer_text)
                rows.append(
                    (
                        relative,
                        "test" if drawer in test_set else "train",
                        alphabet,
                        f"{drawer:02d}",
                        char_id,
                        f"{alphabet}/{character}",
                    )
                )
    if not rows:
        raise InputError(f"{base}: the zips hold no PNG images")
    table = pd.DataFrame(rows, columns=["path", "split", "alphabet", "drawer", "char_id", "class"])
    hierarchy = dict(zip(table["class"], table["alphabet"], strict=True))
    return in_memory_dataset(
        "omniglot",
        np.stack(images),
        table.drop(columns="class"),
        table["class"].tolist(),
        options,
        AuxInfo(
            attributes=("alphabet", "drawer"),
            hierarchy=hierarchy,
            notes="alphabet: attribute and hierarchy character -> alphabet; drawer: the negative control "
            f"(semantically useless); split by drawer, test drawers {sorted(test_set)}",
        ),
        resized=True,
        skipped=skipped,
    )
