"""The Python API of the whole pipeline: train a run, evaluate it, embed images with it.

>>> import clinfonce
>>> run = clinfonce.train("shapes", {"train.epochs": 5, "train.out": "runs/shapes"})
>>> run.metrics["linear_top1"]
>>> encoder = clinfonce.load_encoder(run)
>>> vectors = encoder.embed(["a.png", "b.jpg"])          # float32 [2, D]

Every function is quiet (no progress bar, no Lightning tips, no warnings) unless ``verbose=True``; user
mistakes raise :class:`clinfonce.InputError` naming the file, key or value at fault. ``docs/api.md`` has
the examples (the test suite runs them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clinfonce.errors import InputError
from clinfonce.logs import library_output

if TYPE_CHECKING:
    from PIL import Image

    from clinfonce.config import Config
    from clinfonce.data.augment import EvalTransform
    from clinfonce.data.dataset import ImageDataset
    from clinfonce.models import Encoder as Network


@dataclass(frozen=True)
class Run:
    """A trained run.

    Attributes:
        dir: the run directory (:class:`clinfonce.run.RunDir` reads every file of it).
        config: the resolved config it was trained with.
        metrics: the evaluation (``linear_top1``, ``knn20_top1``, ... in percent), or None when it was not
            evaluated.
    """

    dir: Path
    config: Config
    metrics: dict[str, Any] | None


def train(
    config: str | os.PathLike | Mapping[str, Any] | Config,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    evaluate: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
) -> Run:
    """Stage 1, stage 2 and (by default) the evaluation, into a run directory.

    Args:
        config: a YAML path, a bundled config name (``"shapes"``, ``"cub200"``, ...), a nested mapping or a
            :class:`~clinfonce.config.Config`.
        overrides: ``{"train.epochs": 5, "optim.lr": 0.01}`` or ``["train.epochs=5"]``.
        evaluate: run the linear probe and kNN after training (as ``eval.enabled`` says).
        resume: continue the run in ``train.out`` from its newest checkpoint (same config).
        overwrite: replace a run already in ``train.out``.
        verbose: print progress (stage 1, one line per epoch, evaluation) on stderr.
    """
    from lightning.pytorch.utilities import rank_zero_only

    from clinfonce.config import load_config
    from clinfonce.training.engine import check_start, launched_as_rank_zero
    from clinfonce.training.engine import train as train_run

    items = dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])
    resolved = load_config(config, items)
    if resume:
        resolved = dataclasses.replace(resolved, train=dataclasses.replace(resolved.train, resume="auto"))
    if not verbose:
        resolved = dataclasses.replace(
            resolved, train=dataclasses.replace(resolved.train, progress_bar=False)
        )
    with library_output(verbose):
        if launched_as_rank_zero():  # before the dataset is read: a refused start fails fast
            check_start(resolved, overwrite)
        dataset = resolved.data.load()
        run = train_run(resolved, dataset=dataset, overwrite=overwrite)
        metrics = None
        if evaluate and resolved.eval.enabled and rank_zero_only.rank == 0:  # one evaluation per run
            from clinfonce.evaluation.pipeline import evaluate_checkpoint

            metrics = evaluate_checkpoint(run.path, dataset=dataset)
    return Run(run.path, run.config(), metrics)


def evaluate(
    run_or_checkpoint: Run | str | os.PathLike,
    dataset: ImageDataset | str | None = None,
    *,
    out: str | os.PathLike | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Linear-probe and kNN accuracy (percent) of a run's encoder, or of one of its checkpoints.

    Args:
        run_or_checkpoint: a :class:`Run`, a run directory, its ``encoder.pt`` or a Lightning checkpoint.
        dataset: the data to evaluate on: a loaded dataset, a bundled config's name whose data to use, or
            None for the run's own.
        out: where ``metrics.json`` and ``report.md`` go; needed unless the run's final encoder is evaluated
            on its own data (whose report it then replaces).
        verbose: print progress on stderr.
    """
    from clinfonce.evaluation.pipeline import evaluate_checkpoint

    with library_output(verbose):
        if isinstance(dataset, str):
            from clinfonce.config import load_config

            dataset = load_config(dataset).data.load()
        return evaluate_checkpoint(_path(run_or_checkpoint), dataset, None if out is None else Path(out))


class Encoder:
    """A trained encoder with its run's own preprocessing: what to hand images to.

    Attributes:
        network: the :class:`clinfonce.models.Encoder` module (backbone + projection head), in eval mode.
        transform: the evaluation transform ``uint8 [B, C, H, W] -> float [B, 3, S, S]`` (resize to the
            training crop size S, normalise with the training data's mean and std).
        image_size: ``(H, W)`` images are decoded to, as the training data's loader did.
        channels: 1 or 3, as the training data had.
        resize: ``center_crop`` or ``stretch``: how a decoded image of another shape was brought to
            ``image_size``.
        source: the file the weights came from.
    """

    def __init__(
        self,
        network: Network,
        transform: EvalTransform,
        image_size: tuple[int, int],
        channels: int,
        resize: str,
        source: Path,
    ) -> None:
        self.network, self.transform = network.eval(), transform
        self.image_size, self.channels, self.resize, self.source = image_size, channels, resize, source

    @property
    def dim(self) -> int:
        """Size of the backbone features :meth:`embed` returns (without ``projection``)."""
        return self.network.feature_dim

    def to(self, device: str | torch.device) -> Encoder:
        """Move the network (and the transform's statistics) to ``device``; returns self."""
        self.network.to(device)
        self.transform.to(device)
        return self

    @torch.no_grad()
    def embed(
        self,
        images: torch.Tensor | np.ndarray | Sequence[Image.Image | str | os.PathLike],
        batch_size: int = 256,
        projection: bool = False,
    ) -> np.ndarray:
        """Embed images, in batches.

        Args:
            images: ``uint8 [N, C, H, W]`` (a tensor or array; any H x W, C = 1 or 3), or a list of PIL
                images or image file paths (decoded, converted and resized as the training data was).
            batch_size: images per forward pass.
            projection: the projection head's output instead of the backbone features (what evaluation
                and retrieval use).

        Returns:
            ``float32 [N, D]``: backbone features (D = :attr:`dim`), or head outputs with ``projection``.
        """
        from clinfonce.features import embed_batches

        batches = (
            self._as_uint8(images[start : start + batch_size]) for start in range(0, len(images), batch_size)
        )
        return embed_batches(self.network, batches, self.transform, projection)

    def _as_uint8(self, images: Any) -> torch.Tensor:
        """A batch as ``uint8 [B, C, H, W]``."""
        if isinstance(images, (torch.Tensor, np.ndarray)):
            batch = torch.as_tensor(images)
            if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] not in (1, 3):
                raise InputError(
                    f"images must be uint8 [N, C, H, W] with C = 1 or 3, got {batch.dtype} {tuple(batch.shape)}"
                )
            return batch
        from PIL import Image

        from clinfonce.data.files import load_array, to_array

        arrays = []
        for item in images:
            if isinstance(item, Image.Image):
                arrays.append(to_array(item, self.image_size, self.channels, self.resize))
            else:
                # decoded as the training data's files were
                arrays.append(load_array(item, self.image_size, self.channels, self.resize))
        return torch.from_numpy(np.stack(arrays))


def load_encoder(run_or_checkpoint: Run | str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """The encoder of a run (its ``encoder.pt``), of a checkpoint, or of a loose ``encoder.pt``.

    Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
    """
    from clinfonce.data.augment import EvalTransform
    from clinfonce.evaluation.pipeline import load_encoder as load

    loaded = load(_path(run_or_checkpoint))
    transform = EvalTransform(loaded.crop_size, loaded.mean, loaded.std)
    size = loaded.input.get("image_size", [loaded.crop_size, loaded.crop_size])
    encoder = Encoder(
        loaded.encoder,
        transform,
        (int(size[0]), int(size[1])),
        int(loaded.input.get("channels", 3)),
        str(loaded.input.get("resize", "center_crop")),
        loaded.source,
    )
    return encoder.to(device)


def _path(run_or_checkpoint: Run | str | os.PathLike) -> Path:
    return run_or_checkpoint.dir if isinstance(run_or_checkpoint, Run) else Path(run_or_checkpoint)
