"""The typed records a run writes besides its weights, each with one writer and one reader.

- :class:`EncoderInfo`: what rebuilds and feeds an encoder (model settings, crop size, normalisation, how
  the training images were decoded); in ``encoder.pt`` and in every training checkpoint.
- :class:`CheckpointMeta`: what clinfonce keeps in a Lightning checkpoint: the encoder info, the number of
  processes, and the loss curve with the running sum of an unfinished epoch.
- :class:`TrainingSummary`: ``training.json``, what the trainer reports besides the weights.

Every record is plain data on disk (``torch.load(weights_only=True)`` and JSON read it), and every reader
turns a missing or malformed field into an :class:`~clinfonce.errors.InputError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from clinfonce.config import ModelConfig
from clinfonce.data.dataset import ImageInput
from clinfonce.errors import InputError
from clinfonce.typed import from_mapping, to_mapping

#: The checkpoint keys of :class:`CheckpointMeta` (their names predate the record; kept for old runs).
_ENCODER_KEY, _PROCESSES_KEY, _LOSS_KEY = "clinfonce", "clinfonce_processes", "clinfonce_loss"


@dataclass(frozen=True)
class EncoderInfo:
    """What rebuilds and feeds an encoder besides its weights.

    Attributes:
        model: the model settings (backbone, head size, ...).
        crop_size: side of the training views in pixels (evaluation resizes to it).
        mean, std: the per-channel normalisation of the training data, in [0, 1] units.
        input: how the training images were decoded (the dataset's loader).
        start: where the weights training started from: ``random initialisation``, the pretrained
            weights (name, package, version, file) or ``model.weights`` (the file).
    """

    model: ModelConfig
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input: ImageInput
    start: str = "random initialisation"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the keys an ``encoder.pt`` and a checkpoint's ``clinfonce`` entry hold)."""
        return {
            "model": to_mapping(self.model),
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "input": {
                "image_size": list(self.input.image_size),
                "channels": self.input.channels,
                "resize": self.input.resize,
            },
            "start": self.start,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> EncoderInfo:
        """The record in ``data``; files written before the decoding was recorded are read as RGB,
        centre-cropped to the crop size, and before the start was recorded as of an unknown start."""
        if "model" not in data:
            raise InputError(
                f"{source}: written by an older clinfonce (no model settings in it); train it again"
            )
        try:
            crop = int(data["crop_size"])
            decoded = data.get("input") or {}
            size = decoded.get("image_size", [crop, crop])
            return cls(
                model=from_mapping(ModelConfig, data["model"], source, "model."),
                crop_size=crop,
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                input=ImageInput(
                    (int(size[0]), int(size[1])),
                    int(decoded.get("channels", 3)),
                    str(decoded.get("resize", "center_crop")),
                ),
                start=str(data.get("start", "not recorded (written by clinfonce < 0.4)")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise InputError(
                f"{source}: malformed encoder settings ({type(error).__name__}: {error})"
            ) from None


@dataclass(frozen=True)
class LossProgress:
    """The training curve so far and the running sum of the unfinished epoch, over every process.

    Attributes:
        epochs: mean loss of every finished epoch (0-based epoch -> loss).
        epoch: the epoch the running sum belongs to.
        sum: sum of its steps' losses so far, over every process.
        steps: steps summed so far, over every process.
        train_seconds: wall-clock seconds of training so far, over resumes.
        samples: training samples every finished epoch consumed, over every process (epoch -> count).
    """

    epochs: dict[int, float] = field(default_factory=dict)
    epoch: int = 0
    sum: float = 0.0
    steps: float = 0.0
    train_seconds: float = 0.0
    samples: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointMeta:
    """What clinfonce keeps in a Lightning checkpoint besides the weights and the trainer's state.

    Attributes:
        encoder: how to rebuild and feed the encoder (None in a checkpoint of something else).
        world_size: processes that trained it (None: written before this was recorded); a resume needs as
            many, since the global batch and an epoch's steps depend on it.
        progress: the loss curve and the unfinished epoch's running sum.
    """

    encoder: EncoderInfo | None
    world_size: int | None
    progress: LossProgress

    def write_into(self, checkpoint: MutableMapping[str, Any]) -> None:
        """Add the record to a checkpoint being saved (plain data only)."""
        if self.encoder is not None:
            checkpoint[_ENCODER_KEY] = self.encoder.to_dict()
        checkpoint[_PROCESSES_KEY] = {"world_size": self.world_size}
        progress = self.progress
        checkpoint[_LOSS_KEY] = {
            "epochs": dict(progress.epochs),
            "epoch": progress.epoch,
            "sum": progress.sum,
            "steps": progress.steps,
            "train_seconds": progress.train_seconds,
            "samples": dict(progress.samples),
        }

    @classmethod
    def read(cls, payload: Mapping[str, Any], source: str) -> CheckpointMeta:
        """The record of a loaded checkpoint (missing parts at their defaults)."""
        encoder = payload.get(_ENCODER_KEY)
        world_size = (payload.get(_PROCESSES_KEY) or {}).get("world_size")
        loss = payload.get(_LOSS_KEY) or {}
        try:
            progress = LossProgress(
                epochs={int(k): float(v) for k, v in (loss.get("epochs") or {}).items()},
                epoch=int(loss.get("epoch", 0)),
                sum=float(loss.get("sum", 0.0)),
                steps=float(loss.get("steps", 0.0)),
                train_seconds=float(loss.get("train_seconds", 0.0)),
                samples={int(k): int(v) for k, v in (loss.get("samples") or {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as error:
            raise InputError(f"{source}: malformed training progress ({error})") from None
        return cls(
            EncoderInfo.from_dict(encoder, source) if isinstance(encoder, Mapping) else None,
            world_size if isinstance(world_size, int) else None,
            progress,
        )


@dataclass(frozen=True)
class TrainingSummary:
    """``training.json``: what the trainer reports besides the weights.

    Attributes:
        epoch_loss: mean training loss of every finished epoch (0-based epoch -> loss), over resumes.
        bad_steps: optimizer steps skipped because the loss or a gradient was not finite.
        train_seconds: wall-clock seconds of training over resumes, to the millisecond (time lost after the
            last checkpoint of an interrupted part is not counted).
        world_size: processes that trained it.
        global_batch: images per optimizer step over all processes.
        lr: the learning rate the optimizer started from (``optim.lr`` scaled by ``optim.lr_scaling``).
        precision: Lightning's precision the run trained in.
        samples_per_epoch: training samples each epoch consumed over every process, in epoch order
            (empty in a summary written before this was recorded).
    """

    epoch_loss: dict[int, float]
    bad_steps: list[int]
    train_seconds: float
    world_size: int
    global_batch: int
    lr: float
    precision: str
    samples_per_epoch: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``training.json``; epochs as string keys, ``n_bad_steps`` for readers of the file)."""
        return {
            "epoch_loss": {str(e): v for e, v in sorted(self.epoch_loss.items())},
            "bad_steps": list(self.bad_steps),
            "n_bad_steps": len(self.bad_steps),
            "train_seconds": self.train_seconds,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "lr": self.lr,
            "precision": self.precision,
            "samples_per_epoch": list(self.samples_per_epoch),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> TrainingSummary:
        try:
            return cls(
                epoch_loss={int(e): float(v) for e, v in data["epoch_loss"].items()},
                bad_steps=[int(step) for step in data["bad_steps"]],
                train_seconds=float(data["train_seconds"]),
                world_size=int(data.get("world_size", 1)),
                global_batch=int(data["global_batch"]),
                lr=float(data["lr"]),
                precision=str(data["precision"]),
                samples_per_epoch=[int(n) for n in data.get("samples_per_epoch", [])],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(
                f"{source}: malformed training summary ({type(error).__name__}: {error})"
            ) from None
