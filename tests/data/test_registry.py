"""The registry: every source's options are typed and validated before any file is opened; loading by name."""

from __future__ import annotations

import builtins
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
from test_imagefolder import make_flat_folder

from clinfonce.data.options import FileOptions, InMemoryOptions, OptionError
from clinfonce.data.registry import DATASETS, Source, dataset_options, load_dataset, source
from clinfonce.data.sources import cub200, imagefolder
from clinfonce.errors import InputError
from clinfonce.typed import fields_of


def test_registry_has_every_loader() -> None:
    expected = {
        "imagefolder",
        "table",
        "utzappos",
        "cub200",
        "wider",
        "imagenet100",
        "cifar10",
        "cifar100",
        "fashion_mnist",
        "omniglot",
    }
    assert expected <= set(DATASETS)
    assert all(isinstance(entry, Source) and entry.name == name for name, entry in DATASETS.items())
    assert all(entry.summary and "\n" not in entry.summary for entry in DATASETS.values())


def test_skip_bad_is_accepted_by_every_source(tmp_path: Path) -> None:
    # the generated dataset has no files to skip: skip_bad is accepted and changes nothing
    shapes = load_dataset("shapes", {"n_train": 8, "n_test": 4, "image_size": 16}, skip_bad=True)
    assert len(shapes) == 12 and shapes.skipped == {}
    make_flat_folder(tmp_path, {"dog": 3, "cat": 3})
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    options = {"root": str(tmp_path), "image_size": 4}
    folder = load_dataset("imagefolder", options, skip_bad=True)
    assert list(folder.skipped) == ["cat/broken.png"] and len(folder) == 6
    with pytest.raises(InputError, match=r"cat/broken\.png"):
        load_dataset("imagefolder", options, skip_bad=False)


def test_skip_bad_is_not_an_option() -> None:
    with pytest.raises(InputError, match=r"data\.options\.skip_bad is not a dataset option"):
        dataset_options("imagefolder", {"root": "x", "skip_bad": True})


def _required(name: str, absent: Path) -> dict[str, Any]:
    """A value for every required option of dataset ``name``: paths that do not exist."""
    return {
        key: str(absent / key)
        for key, _, default, _ in fields_of(DATASETS[name].options)
        if default is dataclasses.MISSING
    }


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_options_validate_defaults_and_required_fields(name: str, tmp_path: Path) -> None:
    entry = DATASETS[name]
    assert dataclasses.is_dataclass(entry.options)
    if name != "shapes":  # the generated dataset has options of its own
        assert issubclass(entry.options, (FileOptions, InMemoryOptions))
    rows = fields_of(entry.options)
    assert all(help_text and "\n" not in help_text for _, _, _, help_text in rows), name
    required = _required(name, tmp_path / "absent")
    options = dataset_options(name, required)
    assert isinstance(options, entry.options)
    for key, _, default, _ in rows:
        expected = required[key] if default is dataclasses.MISSING else default
        # a required list option given as one text is a list of one (the one list syntax)
        assert getattr(options, key) in (expected, [expected]), key
    for key in required:  # each required option, left out, is named
        with pytest.raises(InputError, match=rf"dataset '{name}': data\.options\.{key} is required"):
            dataset_options(name, {k: v for k, v in required.items() if k != key})


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_a_misspelled_option_gets_a_did_you_mean(name: str, tmp_path: Path) -> None:
    values = {**_required(name, tmp_path), "image_sise": 8}
    with pytest.raises(
        InputError,
        match=r"unknown key 'data\.options\.image_sise' \(did you mean 'data\.options\.image_size'\?\)",
    ):
        dataset_options(name, values)
    with pytest.raises(InputError, match=r"unknown key 'options\.image_sise'"):
        dataset_options(name, values, prefix="options.")


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"shapes"}))
def test_options_open_no_file_the_source_does(name: str, tmp_path: Path, monkeypatch) -> None:
    absent = tmp_path / "absent"
    values = {"root": str(absent), **_required(name, absent)}

    def no_files(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a file was touched: {args}")

    with monkeypatch.context() as patch:
        for module, attr in (
            (builtins, "open"),
            (os, "stat"),
            (os, "scandir"),
            (os, "listdir"),
            (os, "open"),
        ):
            patch.setattr(module, attr, no_files)
        options = dataset_options(name, values)
    assert not absent.exists()
    with pytest.raises(InputError, match=re.escape(str(absent))):  # the missing folder is found by load
        load_dataset(name, options)


def test_values_are_converted_and_checked_with_the_key_named() -> None:
    options = dataset_options(
        "cub200", {"root": Path("/data/cub"), "image_size": "64", "attributes": "false"}
    )
    assert (options.root, options.image_size, options.attributes) == ("/data/cub", 64, False)
    with pytest.raises(InputError, match=r"dataset 'cub200': data\.options\.image_size: "):
        dataset_options("cub200", {"root": "x", "image_size": "big"})
    with pytest.raises(InputError, match=r"data\.options\.image_size: "):
        dataset_options("cub200", {"root": "x", "image_size": [8, 8]})  # square images: one int
    checks = {
        "val_fraction": (1.5, r"must be in \[0, 1\), got 1\.5"),
        "channels": (2, r"must be one of \[1, 3\], got 2"),
        "resize": ("squash", r"must be one of \['center_crop', 'stretch'\]"),
        "min_certainty": (5, r"must be 1\.\.4, got 5"),
        "image_size": (0, r"must be a positive integer, got 0"),
    }
    for key, (value, message) in checks.items():
        with pytest.raises(InputError, match=rf"dataset 'cub200': data\.options\.{key} {message}"):
            dataset_options("cub200", {"root": "x", key: value})
    with pytest.raises(InputError, match=r"data\.options\.unspecified must be one of"):
        dataset_options("wider", {"root": "x", "unspecified": "guess"})
    with pytest.raises(InputError, match=r"data\.options\.test_fraction must be in \[0, 1\)"):
        dataset_options("utzappos", {"root": "x", "test_fraction": 1})
    with pytest.raises(InputError, match=r"data\.options\.hierarchy must be 'wordnet' or null"):
        dataset_options("imagefolder", {"root": "x", "hierarchy": "linnaean"})
    with pytest.raises(InputError, match=r"data\.options\.hierarchy_col and hierarchy='wordnet'"):
        dataset_options("table", {"table": "t.csv", "hierarchy": "wordnet", "hierarchy_col": "h"})
    with pytest.raises(InputError, match=r"data\.options\.mean must have 1 or 3 values"):
        dataset_options("table", {"table": "t.csv", "mean": [0.1, 0.2]})
    with pytest.raises(InputError, match=r"data\.options\.image_size must be an integer >= 16"):
        dataset_options("shapes", {"image_size": 8})
    # the same checks when code builds the options directly
    with pytest.raises(OptionError, match=r"^min_certainty must be 1\.\.4, got 0$"):
        cub200.Cub200Options(root="x", min_certainty=0)


def test_lists_take_a_yaml_list_or_commas() -> None:
    table = dataset_options("table", {"table": "t.csv", "attributes": "striped, color", "tags": ["a"]})
    assert table.attributes == ["striped", "color"] and table.tags == ["a"]
    assert dataset_options("omniglot", {"test_drawers": "1,2"}).test_drawers == [1, 2]
    parents = {"cat": "felid", "felid": None, "dog": ["canid", "pet"]}
    assert dataset_options("imagefolder", {"root": "x", "parents": parents}).parents == parents


def test_the_metadata_table_option_is_named_table() -> None:
    with pytest.raises(
        InputError, match=r"unknown key 'data\.options\.table_path' \(did you mean 'data\.options\.table'\?\)"
    ):
        dataset_options("table", {"table_path": "meta.csv"})


def test_unknown_dataset_gets_a_did_you_mean() -> None:
    assert source("cub200") is DATASETS["cub200"]
    with pytest.raises(InputError, match=r"unknown dataset 'cub'.*did you mean 'cub200'"):
        source("cub")
    with pytest.raises(InputError, match=r"unknown dataset 'cifar'"):
        load_dataset("cifar", {})
    with pytest.raises(InputError, match="known: cifar10, cifar100"):
        dataset_options("nothing-like-it")


def test_load_dataset_takes_a_mapping_or_the_options_object(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, {"a": 2, "b": 2})
    by_mapping = load_dataset("imagefolder", {"root": tmp_path, "image_size": 4})
    options = imagefolder.ImageFolderOptions(root=str(tmp_path), image_size=4)
    by_object = load_dataset("imagefolder", options)
    assert by_object.table.equals(by_mapping.table)
    assert load_dataset("shapes").image_size == (32, 32)  # every option at its default
    with pytest.raises(TypeError, match="ImageFolderOptions or a mapping"):
        load_dataset("imagefolder", cub200.Cub200Options(root=str(tmp_path)))
