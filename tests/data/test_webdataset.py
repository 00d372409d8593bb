"""WebDataset shards: read against the same images as files, their rules and errors, packing round trips."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clinfonce.clusters import ClusterSpec, build_for_dataset
from clinfonce.data.files import FileImageLoader
from clinfonce.data.loaders import train_loader
from clinfonce.data.pack import pack_dataset
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError


def image_bytes(seed: int, fmt: str = "JPEG", size=(20, 14)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_shard(path, samples: list[dict[str, bytes]]) -> None:
    """``samples``: each a mapping extension -> bytes, with the key under ``__key__``."""
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            for extension, data in sample.items():
                if extension == "__key__":
                    continue
                info = tarfile.TarInfo(f"{sample['__key__']}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def sample(key: str, seed: int, fields: dict | None = None, **members: bytes) -> dict[str, bytes]:
    out = {"__key__": key, "jpg": image_bytes(seed)}
    if fields is not None:
        out["json"] = json.dumps(fields).encode()
    return {**out, **members}


@pytest.fixture()
def shards(tmp_path):
    """Two training shards (keys in folders, json fields, txt captions, cls labels) and one test shard."""
    folder = tmp_path / "shards"
    folder.mkdir()
    colours = ["red", "blue"]
    for number in range(2):
        write_shard(folder / f"train-{number:03d}.tar", [
            sample(f"img/{number}_{i}", 10 * number + i, {"colour": colours[i % 2], "tags": ["#a", f"#t{i}"]},
                   txt=f"caption {i}".encode(), cls=str(i % 3).encode())
            for i in range(6)
        ])  # fmt: skip
    write_shard(folder / "test-000.tar", [
        sample(f"test/{i}", 100 + i, {"colour": "red", "tags": []}, cls=str(i % 3).encode()) for i in range(4)
    ])  # fmt: skip
    return folder


def load(folder, **options):
    return load_dataset(
        "webdataset", {"shards": [str(folder / "train-{000..001}.tar")], "image_size": 8, **options}
    )


def test_samples_become_rows_with_their_fields(shards) -> None:
    dataset = load(shards, test_shards=[str(shards / "test-000.tar")])
    table = dataset.table
    assert table["path"].tolist() == [f"img/{n}_{i}" for n in range(2) for i in range(6)] + [
        f"test/{i}" for i in range(4)
    ]
    assert table["split"].tolist() == ["train"] * 12 + ["test"] * 4
    assert dataset.class_names == ["0", "1", "2"]
    assert table["label"].tolist() == [i % 3 for _ in range(2) for i in range(6)] + [i % 3 for i in range(4)]
    assert table["caption"].iloc[1] == "caption 1" and pd.isna(table["caption"].iloc[12])
    assert table["colour"].iloc[3] == "blue" and table["tags"].iloc[2] == ["#a", "#t2"]
    clusters = build_for_dataset(ClusterSpec(source="attributes", tags=["tags"], top_k=2), dataset)
    assert clusters.n == 16


def test_images_equal_the_same_bytes_read_as_files(shards, tmp_path) -> None:
    dataset = load(shards, image_size=12)
    files = tmp_path / "files"
    files.mkdir()
    for row, key in enumerate(dataset.table["path"]):
        number, i = (int(part) for part in key.split("/")[1].split("_"))
        (files / f"{row}.jpg").write_bytes(image_bytes(10 * number + i))
    reference = FileImageLoader(files, [f"{row}.jpg" for row in range(len(dataset))], 12)
    for row in range(len(dataset)):
        assert torch.equal(dataset.loader(row), reference(row)), row


def test_a_loader_in_worker_processes_reads_every_image(shards) -> None:
    dataset = load(shards, test_shards=[str(shards / "test-000.tar")])
    rows = dataset.rows("train")
    loader = train_loader(dataset, rows, batch_size=4, seed=0, workers=2)
    seen = torch.cat([batch[2] for batch in loader])
    assert sorted(seen.tolist()) == sorted(rows.tolist())


def test_splits_from_a_field_or_seeded(shards, tmp_path) -> None:
    folder = tmp_path / "split"
    folder.mkdir()
    write_shard(
        folder / "a.tar", [sample(f"k{i}", i, {"split": "test" if i < 2 else "train"}) for i in range(6)]
    )
    assert load_dataset("webdataset", {"shards": [str(folder)], "image_size": 8}).table["split"].tolist() == [
        "test", "test", "train", "train", "train", "train"
    ]  # fmt: skip
    seeded = load(shards, test_fraction=0.25)["split"] if False else load(shards, test_fraction=0.25).table
    assert (seeded["split"] == "test").sum() == 3  # a quarter of each class of 4 images: 1 each


def test_truncated_shard_is_one_error_or_a_counted_skip(shards, tmp_path) -> None:
    cut = tmp_path / "cut.tar"
    data = (shards / "train-000.tar").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.tar: truncated shard.*--skip-bad"):
        load_dataset("webdataset", {"shards": [str(cut)], "image_size": 8})
    kept = load_dataset("webdataset", {"shards": [str(cut)], "image_size": 8}, skip_bad=True)
    assert 0 < len(kept) < 6 and str(cut) in kept.skipped
    assert kept.table["path"].tolist() == [f"img/0_{i}" for i in range(len(kept))]
    # the sample the cut ends in is left out and counted: the shard is cut after it
    assert set(kept.skipped) - {str(cut)} <= {f"{cut}:img/0_{len(kept)}"}


def test_bad_samples_and_shards_name_shard_and_member(tmp_path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    write_shard(folder / "no_image.tar", [sample("a", 1), {"__key__": "b", "json": b"{}"}])
    with pytest.raises(InputError, match=r"no_image\.tar:b: no image member"):
        load_dataset("webdataset", {"shards": [str(folder / "no_image.tar")], "image_size": 8})
    skipping = load_dataset(
        "webdataset", {"shards": [str(folder / "no_image.tar")], "image_size": 8}, skip_bad=True
    )
    assert len(skipping) == 1 and list(skipping.skipped) == [f"{folder / 'no_image.tar'}:b"]
    write_shard(folder / "dup.tar", [sample("a", 2)])
    with pytest.raises(InputError, match=r"dup\.tar:a: the key 'a' is also a sample of .*no_image\.tar"):
        load_dataset(
            "webdataset",
            {"shards": [str(folder / "no_image.tar"), str(folder / "dup.tar")], "image_size": 8},
            skip_bad=True,
        )
    write_shard(folder / "json.tar", [sample("c", 3, json=b"[1, 2]")])
    with pytest.raises(InputError, match=r"json\.tar:c: bad metadata: a json member must hold an object"):
        load_dataset("webdataset", {"shards": [str(folder / "json.tar")], "image_size": 8})
    (folder / "x.tar.gz").write_bytes(b"")
    with pytest.raises(InputError, match="compressed shard cannot be read by position"):
        load_dataset("webdataset", {"shards": [str(folder / "x.tar.gz")], "image_size": 8})
    with pytest.raises(InputError, match=r"data\.options\.shards: no such shard .*missing-000\.tar"):
        load_dataset("webdataset", {"shards": [str(folder / "missing-{000..001}.tar")], "image_size": 8})


def test_an_image_member_too_large_for_the_index_is_named(tmp_path, monkeypatch) -> None:
    import clinfonce.data.shards as shards_module

    small, large = image_bytes(1), image_bytes(2, size=(200, 140))
    write_shard(
        tmp_path / "big.tar", [{"__key__": "small", "jpg": small}, {"__key__": "large", "jpg": large}]
    )
    monkeypatch.setattr(shards_module, "_MAX_IMAGE_BYTES", len(small))  # the 2 GiB limit, scaled down
    options = {"shards": [str(tmp_path / "big.tar")], "image_size": 8}
    with pytest.raises(InputError, match=rf"big\.tar:large: an image member of {len(large):,} bytes"):
        load_dataset("webdataset", options)
    kept = load_dataset("webdataset", options, skip_bad=True)
    assert kept.table["path"].tolist() == ["small"] and list(kept.skipped) == [
        f"{tmp_path / 'big.tar'}:large"
    ]


def test_a_corrupt_image_is_found_when_read_or_up_front(tmp_path) -> None:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    write_shard(folder / "s.tar", [sample("good", 1), {"__key__": "broken", "jpg": image_bytes(2)[:60]}])
    dataset = load_dataset("webdataset", {"shards": [str(folder)], "image_size": 8})
    dataset.loader(0)
    with pytest.raises(InputError, match=r"s\.tar:broken\.jpg: truncated or corrupt image"):
        dataset.loader(1)
    with pytest.raises(InputError, match=r"s\.tar:broken\.jpg"):
        load_dataset("webdataset", {"shards": [str(folder)], "image_size": 8, "check_files": True})
    screened = load_dataset(
        "webdataset", {"shards": [str(folder)], "image_size": 8, "check_files": True}, skip_bad=True
    )
    assert screened.table["path"].tolist() == ["good"] and list(screened.skipped) == [
        f"{folder / 's.tar'}:broken.jpg"
    ]


def test_packing_an_image_folder_round_trips(tmp_path) -> None:
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(5):
            (root / label / f"{i}.v1.jpg").write_bytes(image_bytes(i + (10 if label == "dog" else 0)))
    meta = tmp_path / "meta.csv"
    paths = [f"{label}/{i}.v1.jpg" for label in ("cat", "dog") for i in range(5)]
    pd.DataFrame({"path": paths, "tags": [f"#x #y{i % 2}" for i in range(10)]}).to_csv(meta, index=False)
    source = load_dataset("imagefolder", {"root": str(root), "image_size": 8, "metadata": str(meta)})
    result = pack_dataset(source, tmp_path / "packed", shard_size=3)
    assert result.manifest["samples"] == 10 and sum(s["samples"] for s in result.manifest["shards"]) == 10
    packed = load_dataset("webdataset", {"shards": [str(tmp_path / "packed")], "image_size": 8})
    by_key = packed.table.set_index("path")
    for row, path in enumerate(source.table["path"]):
        key = path.rsplit(".", 1)[0].replace(".", "_")  # cat/0.v1.jpg -> cat/0_v1
        other = packed.table.index[packed.table["path"] == key][0]
        assert by_key.loc[key, "split"] == source.table["split"].iloc[row]
        assert (
            packed.class_names[by_key.loc[key, "label"]]
            == source.class_names[source.table["label"].iloc[row]]
        )
        assert torch.equal(packed.loader(other), source.loader(row))
    spec = ClusterSpec(source="attributes", tags=["tags"], top_k=2)
    ours = build_for_dataset(spec, packed)
    theirs = build_for_dataset(spec, source)
    order = [
        packed.table.index[packed.table["path"] == p.rsplit(".", 1)[0].replace(".", "_")][0]
        for p in source.table["path"]
    ]
    assert ours.ids[order].tolist() == theirs.ids.tolist()
    with pytest.raises(InputError, match="not an empty folder"):
        pack_dataset(source, tmp_path / "packed")


def test_pack_command_line(tmp_path) -> None:
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "clinfonce", "data", "pack", "--dataset", "shapes", "--data-option",
               "n_train=20", "--data-option", "n_test=6", "--out", str(out), "--shard-size", "8"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote 4 shard(s) of 26 samples (train 20, test 6)" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"].startswith("clinfonce data pack --dataset shapes") and manifest["classes"]
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "not an empty folder" in again.stderr and "Traceback" not in again.stderr


def test_training_on_packed_shards_equals_training_on_the_source(tmp_path) -> None:
    """The shapes data packed (lossless PNG of its pixels) and trained from the shards: the same table rows,
    pixels and normalisation, so one epoch gives the very same loss as training on the source."""
    import clinfonce
    from clinfonce.data.registry import load_dataset as load_source

    options = {"n_train": 128, "n_test": 32, "seed": 4}
    source = load_source("shapes", options)
    pack_dataset(source, tmp_path / "shards", shard_size=50)
    common = {
        "model.width": 8, "model.head_dim": 16, "optim.batch_size": 32, "train.progress_bar": False,
        "train.epochs": 1, "clusters.attributes": ["round", "hollow"], "clusters.top_k": 2,
        "eval.probe_epochs": 5,
    }  # fmt: skip
    direct = clinfonce.train("shapes", {**common, "data.options": options, "train.out": str(tmp_path / "a")})
    shard_options = {
        "shards": [str(tmp_path / "shards")], "image_size": 32, "resize": "stretch",
        "mean": list(source.mean), "std": list(source.std),
    }  # fmt: skip
    packed = clinfonce.train(
        "shapes",
        {
            **common,
            "data.name": "webdataset",
            "data.options": shard_options,
            "train.out": str(tmp_path / "b"),
        },
    )
    assert packed.clusters.ids.tolist() == direct.clusters.ids.tolist()
    assert packed.training.epoch_loss[0] == pytest.approx(direct.training.epoch_loss[0], rel=1e-6)
    assert packed.metrics["linear_top1"] == pytest.approx(direct.metrics["linear_top1"], abs=1e-6)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_index_equals_tarfiles_reading(tmp_path, tar_format) -> None:
    """Short names (the fast header scan) and names past 100 characters (ustar prefix, GNU and pax long
    names: read by tarfile), folders and links among the members: keys, image offsets and sizes as
    tarfile reads them."""
    from clinfonce.data.shards import index_shards

    long = "a" * 60 + "/" + "b" * 70
    names = (
        ["x/1", "x/2", long + "/3"]
        if tar_format != tarfile.USTAR_FORMAT
        else ["x/1", "x/2", long[:90] + "/3"]
    )
    for case, keys in (("short", names[:2]), ("long", names)):
        path = tmp_path / f"{case}-{tar_format}.tar"
        with tarfile.open(path, "w", format=tar_format) as tar:
            folder = tarfile.TarInfo("x")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            for i, key in enumerate(keys):
                for extension, data in (("jpg", image_bytes(i)), ("json", json.dumps({"i": i}).encode())):
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("x/link.jpg")
            link.type, link.linkname = tarfile.SYMTYPE, "x/1.jpg"
            tar.addfile(link)
        index = index_shards([path])
        with tarfile.open(path) as tar:
            reference = {
                m.name[: -len(".jpg")]: (m.offset_data, m.size)
                for m in tar
                if m.name.endswith(".jpg") and m.isfile()
            }
        assert list(index.keys) == list(reference) == keys
        assert list(zip(index.offset, index.size, strict=True)) == list(reference.values())
        assert index.metadata["i"].tolist() == list(range(len(keys)))


def test_a_corrupt_header_is_named(tmp_path) -> None:
    path = tmp_path / "s.tar"
    write_shard(path, [sample("a", 1, {}), sample("b", 2, {}), sample("c", 3, {})])
    data = bytearray(path.read_bytes())
    header = data.index(b"b.json")
    data[header + 130] ^= 0x01  # a size digit: the header's checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"s\.tar: corrupt shard: bad header after member 'b\.jpg'"):
        load_dataset("webdataset", {"shards": [str(path)], "image_size": 8})
    kept = load_dataset("webdataset", {"shards": [str(path)], "image_size": 8}, skip_bad=True)
    assert kept.table["path"].tolist() == ["a"]  # b may lack members: left out, and counted
    assert sorted(kept.skipped) == [str(path), f"{path}:b"]


def test_a_run_on_shards_resumes_in_the_middle_of_an_epoch_exactly(tmp_path) -> None:
    """Continued from the checkpoint after step 3 of 4 (epoch 0), a run on shards ends with bitwise the
    weights and the curve of the uninterrupted run: the shards are read by position, in the sampler's order."""
    import clinfonce
    from clinfonce.data.registry import load_dataset as load_source

    pack_dataset(load_source("shapes", {"n_train": 128, "n_test": 16, "seed": 4}), tmp_path / "shards", 40)
    settings = {
        "data.name": "webdataset",
        "data.options": {"shards": [str(tmp_path / "shards")], "image_size": 32, "resize": "stretch"},
        "clusters.source": "none", "method.name": "simclr", "model.width": 8, "model.head_dim": 16,
        "optim.batch_size": 32, "train.epochs": 2, "train.progress_bar": False,
        "train.checkpoint_every_n_steps": 3,
    }  # fmt: skip
    straight = clinfonce.train("shapes", {**settings, "train.out": str(tmp_path / "a")}, evaluate=False)
    (step_3,) = (tmp_path / "a" / "checkpoints").glob("step00000003*.ckpt")
    resumed = clinfonce.train(
        "shapes", {**settings, "train.out": str(tmp_path / "b"), "train.resume": str(step_3)}, evaluate=False
    )
    for name, value in straight.encoder.network.state_dict().items():
        assert torch.equal(value, resumed.encoder.network.state_dict()[name]), name
    assert straight.training.epoch_loss == resumed.training.epoch_loss
    assert resumed.training.samples_per_epoch == [128, 128]
