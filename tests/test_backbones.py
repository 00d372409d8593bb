"""Backbones by name from timm and torchvision, and fine-tuning from a local weights file."""

from __future__ import annotations

import lightning as L
import pytest
import timm
import torch
import torchvision

from clinfonce.config import load_config
from clinfonce.data.registry import load_dataset
from clinfonce.errors import InputError
from clinfonce.models import build_backbone, load_backbone_weights
from clinfonce.training.engine import train


def test_a_timm_backbone_is_the_timm_model_without_its_classifier() -> None:
    net, dim = build_backbone("timm/test_resnet")
    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    reference.load_state_dict(net.state_dict())
    net.eval(), reference.eval()
    images = torch.randn(2, 3, 32, 32)
    assert dim == reference.num_features
    torch.testing.assert_close(net(images), reference(images))


def test_a_torchvision_backbone_is_the_model_up_to_its_last_linear_layer() -> None:
    net, dim = build_backbone("torchvision/resnet18")
    full = torchvision.models.resnet18(weights=None)
    full.load_state_dict({**net.state_dict(), "fc.weight": full.fc.weight, "fc.bias": full.fc.bias})
    full.fc = torch.nn.Identity()
    net.eval(), full.eval()
    images = torch.randn(2, 3, 64, 64)
    assert dim == 512
    torch.testing.assert_close(net(images), full(images))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("timm/no_such_net", "timm has no model"),
        ("torchvision/no_such_net", "torchvision has no"),
        ("resnet99", "unknown backbone"),
    ],
)
def test_an_unknown_backbone_is_one_clear_error(name, message) -> None:
    with pytest.raises(InputError, match=message):
        build_backbone(name)


@pytest.fixture
def timm_checkpoint(tmp_path):
    """A timm training checkpoint of the whole model (classifier included), as timm's train.py saves."""
    model = timm.create_model("test_resnet", pretrained=False, num_classes=7)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
        tmp_path / "w.pth",
    )
    return tmp_path / "w.pth", model.state_dict()


def test_weights_load_into_the_backbone_and_the_classifier_is_left_out(timm_checkpoint) -> None:
    path, saved = timm_checkpoint
    net, _ = build_backbone("timm/test_resnet")
    left_out = load_backbone_weights(net, path)
    assert left_out == ["fc.bias", "fc.weight"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_weights_of_another_model_are_refused(timm_checkpoint, tmp_path) -> None:
    path, _ = timm_checkpoint
    net, _ = build_backbone("torchvision/resnet18")
    with pytest.raises(InputError, match=r"lacks .* weight"):
        load_backbone_weights(net, path)
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not a state dict"):
        load_backbone_weights(net, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="no such file"):
        load_backbone_weights(net, tmp_path / "missing.pt")
    small, _ = build_backbone("small", width=8)
    wide, _ = build_backbone("small", width=16)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(InputError, match="has shape"):
        load_backbone_weights(small, tmp_path / "wide.pt")


class _FirstWeights(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.state = {k: v.clone() for k, v in module.encoder.backbone.state_dict().items()}


def test_fine_tuning_starts_from_the_file(timm_checkpoint, tmp_path) -> None:
    path, saved = timm_checkpoint
    weights = tmp_path / "start.pt"
    weights.write_bytes(path.read_bytes())
    config = load_config(
        "shapes",
        {
            "data.options": {"n_train": 64, "n_test": 32, "seed": 0},
            "model.backbone": "timm/test_resnet",
            "model.weights": str(weights),
            "optim.batch_size": 16,
            "train.epochs": 1,
            "train.progress_bar": False,
            "train.out": str(tmp_path / "run"),
        },
    )
    first = _FirstWeights()
    run = train(
        config, callbacks=[first], dataset=load_dataset("shapes", {"n_train": 64, "n_test": 32, "seed": 0})
    )
    for key, value in first.state.items():
        assert torch.equal(value, saved[key]), key
    trained = torch.load(run.files.encoder_path, weights_only=True)["state_dict"]
    changed = [k for k in first.state if not torch.equal(trained[f"backbone.{k}"], saved[k])]
    assert changed  # and then it was trained (fine-tuned)
    # a resume takes every weight from its checkpoint: the starting file is not needed any more
    weights.unlink()
    longer = load_config(config, ["train.epochs=2", "train.resume=auto"])
    resumed = train(longer, dataset=load_dataset("shapes", {"n_train": 64, "n_test": 32, "seed": 0}))
    assert list(resumed.training.epoch_loss) == [0, 1]
