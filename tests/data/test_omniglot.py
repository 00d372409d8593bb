"""Omniglot from zip fixtures in the published layout, plus the real zips where this machine has them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.registry import load_dataset
from clinfonce.data.sources import omniglot
from clinfonce.data.sources.omniglot import DEFAULT_DIR as OMNIGLOT_DIR
from clinfonce.errors import InputError


def omniglot_dataset(skip_bad: bool = False, **options: object) -> ImageDataset:
    return omniglot.load(omniglot.OmniglotOptions(**options), skip_bad=skip_bad)


def png_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    array = np.full((105, 105), 255, dtype=np.uint8)
    array[value % 100 : value % 100 + 5, :] = 0
    Image.fromarray(array).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_omniglot_zip(path: Path, characters: dict[str, str], change: str | None = None) -> None:
    """``characters``: "<Alphabet>/characterNN" -> char id; 20 drawers each."""
    top = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{top}/", "")
        for index, (character, char_id) in enumerate(sorted(characters.items())):
            for drawer in range(1, 21):
                name = f"{top}/{character}/{char_id}_{drawer:02d}.png"
                archive.writestr(
                    name, png_bytes(index * 20 + drawer + (50 if name.endswith(change or "?") else 0))
                )


def test_omniglot_zips(tmp_path: Path) -> None:
    write_omniglot_zip(
        tmp_path / "images_background_small1.zip", {"Aleph/character01": "0001", "Greek/character01": "0394"}
    )
    write_omniglot_zip(
        tmp_path / "images_background_small2.zip", {"Greek/character01": "0394", "Beta/character02": "0777"}
    )
    data = load_dataset("omniglot", {"root": tmp_path, "image_size": 32})
    # Greek appears in both zips: de-duplicated, and Beta sorts before Greek in the second zip
    assert len(data) == 60
    assert data.class_names == ["Aleph/character01", "Beta/character02", "Greek/character01"]
    table = data.table
    assert table["path"].iloc[0] == "Aleph/character01/0001_01.png"
    assert table.groupby(["label", "split"]).size().to_dict() == {
        (c, s): n for c in range(3) for s, n in (("test", 5), ("train", 15))
    }
    assert set(table[table["split"] == "test"]["drawer"]) == {"16", "17", "18", "19", "20"}
    assert data.aux.attributes == ("alphabet", "drawer")
    assert data.aux.hierarchy == {
        "Aleph/character01": "Aleph",
        "Beta/character02": "Beta",
        "Greek/character01": "Greek",
    }
    assert "negative control" in data.aux.notes
    image = data.loader(0)
    assert image.shape == (1, 32, 32) and image.max() == 255 and image.min() < 128
    other = omniglot_dataset(root=tmp_path, test_drawers=[1], val_fraction=0.1)
    assert other.table["split"].value_counts().to_dict() == {"train": 51, "val": 6, "test": 3}


def test_omniglot_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Omniglot zips"):
        omniglot_dataset(root=tmp_path)
    write_omniglot_zip(tmp_path / "images_a.zip", {"Greek/character01": "0394"})
    write_omniglot_zip(tmp_path / "images_b.zip", {"Greek/character01": "0394"}, change="_03.png")
    with pytest.raises(InputError, match=r"images_b\.zip:images_b/Greek/character01/0394_03\.png: differs"):
        omniglot_dataset(root=tmp_path)
    (tmp_path / "images_b.zip").unlink()
    with zipfile.ZipFile(tmp_path / "images_c.zip", "w") as archive:
        archive.writestr("images_c/Greek/character02/0395_01.png", b"not a png")
    with pytest.raises(InputError, match=r"0395_01\.png: not an image"):
        omniglot_dataset(root=tmp_path)
    data = omniglot_dataset(root=tmp_path, skip_bad=True)
    assert data.skipped == {"Greek/character02/0395_01.png": "not an image (PIL cannot identify it)"}
    assert len(data) == 20 and data.class_names == ["Greek/character01"]


@pytest.mark.skipif(
    not (OMNIGLOT_DIR / "images_background_small1.zip").is_file(),
    reason="the Omniglot zips are not in /work/shared/datasets/omniglot",
)
def test_real_omniglot() -> None:
    data = omniglot_dataset()
    table = data.table
    assert len(data) == 4840 and data.n_classes == 242
    assert table["alphabet"].nunique() == 8 and len(data.aux.hierarchy) == 242
    assert (table.groupby("label")["split"].nunique() == 2).all()  # every character in both splits
    assert table["split"].value_counts().to_dict() == {"train": 242 * 15, "val": 0, "test": 242 * 5}
    assert not table["path"].duplicated().any()
    assert data.loader(0).shape == (1, 28, 28)
