"""The one LightningModule: backbone + head + loss, for every method.

A batch from the loader is ``(images uint8 [B, C, H, W], labels int64 [B], rows int64 [B])``. Augmentation
runs here, on the batch's device, producing V views. The cluster id of a sample is looked up by its table
row in the ``cluster_ids`` buffer, so the ids need no change to the dataset and travel with checkpoints.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from clinfonce.config import Config, OptimConfig
from clinfonce.data.augment import ContrastiveAugment
from clinfonce.data.dataset import ImageInput
from clinfonce.dist import gather_no_grad
from clinfonce.encoder import Encoder, network_with_weights
from clinfonce.methods import METHODS
from clinfonce.models import Network, load_starting_weights, starting_weights
from clinfonce.records import CheckpointMeta, EncoderInfo, LossProgress
from clinfonce.training.batchnorm import globalise
from clinfonce.training.objectives import Batch, ObjectiveInputs, build_objective

log = logging.getLogger(__name__)


class ContrastiveModule(L.LightningModule):
    """Trains a :class:`~clinfonce.models.Network` with the method of ``config.method.name``
    (:mod:`clinfonce.methods`; the loss is its :data:`~clinfonce.training.objectives.OBJECTIVES` entry's).

    Args:
        config: the run configuration.
        n_rows: rows in the dataset table (size of the ``cluster_ids`` buffer).
        n_classes: downstream classes (for ``ce``).
        crop_size: side of the augmented views in pixels.
        mean, std: normalisation statistics of the dataset.
        image_input: how the training images were decoded (the dataset's), kept in checkpoints and
            ``encoder.pt`` so images from elsewhere can be prepared alike.
        cluster_ids: ``int64 [n_rows]``, -1 for rows without a cluster (not trained on), or None.
        n_clusters: stage-1 clusters (for ``cluster_ce``).
        attribute_targets: ``int8 [n_rows, A]`` the clustered attributes, +1 / -1 / 0 missing (for
            ``attr_bce`` and ``attr_infonce``).
        tag_vectors: ``scipy.sparse.csr_array`` ``float32 [n_rows, T]`` tag vectors per table row, for soft
            positives (``method.positives: tags``).
        keep_projections: keep the newest L2-normalised head output of every row (``projections``, a
            :class:`ProjectionBank`), for K-means on training features.
        start_from_weights: load ``model.weights`` into the backbone (False when a checkpoint will replace
            every weight anyway: a resume does not need the file).
    """

    cluster_ids: Tensor

    def __init__(
        self,
        config: Config,
        n_rows: int,
        n_classes: int,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        image_input: ImageInput,
        cluster_ids: Tensor | None = None,
        n_clusters: int | None = None,
        attribute_targets: np.ndarray | None = None,
        tag_vectors: Any = None,
        keep_projections: bool = False,
        start_from_weights: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = Network.of(config.model)
        #: where the weights started from (a resume takes every weight from its checkpoint instead)
        self.start = (
            load_starting_weights(self.encoder.backbone, config.model)
            if start_from_weights
            else starting_weights(config.model)
        )
        self.encoder.freeze(config.model.freeze_stages)
        self.augment: ContrastiveAugment = config.augment.build(crop_size, mean, std, config.method.n_views)
        self.image_input = image_input
        inputs = ObjectiveInputs(config, self.encoder, n_classes, n_clusters, attribute_targets, tag_vectors)
        self.objective = build_objective(inputs) if METHODS[config.method.name].trains else None
        if config.model.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
        ids = torch.full((n_rows,), -1, dtype=torch.long) if cluster_ids is None else cluster_ids.long()
        self.register_buffer("cluster_ids", ids.clone())
        #: the newest training projection of every row (for K-means on training features); kept by global
        #: rank 0 only, which receives every rank's projections at each step (made in :meth:`setup`)
        self.projections: ProjectionBank | None = None
        self._bank_rows = n_rows if keep_projections else None
        self.generator: torch.Generator | None = None
        self.lr = config.optim.lr
        #: mean training loss of every finished epoch (the training curve; kept in checkpoints)
        self.epoch_losses: dict[int, float] = {}
        #: training samples every finished epoch consumed, over every process (kept in checkpoints)
        self.epoch_samples: dict[int, int] = {}
        # the running sum over the current epoch's steps, on the device (no sync per step)
        self._loss_sum: Tensor | None = None
        # steps summed on this process (a float: a resume hands each process an equal share of the total)
        self._loss_epoch, self._loss_steps = 0, 0.0
        #: log one line per finished epoch (loss, seconds): for logs and pipes, where a bar writes frames
        self.announce_epochs = False
        self._epoch_started = time.perf_counter()
        # training wall time of the checkpoints this run resumed from, and when this process started
        self._seconds_before, self._started = 0.0, time.perf_counter()

    def setup(self, stage: str) -> None:
        sync = self.config.train.sync_batchnorm
        if sync or (sync is None and self.trainer.world_size > 1):
            globalise(self)  # normalise over the global batch of every process: W processes train as one
        # Contrast against the whole global batch when several processes train together.
        loss_fn = getattr(self.objective, "loss_fn", None)
        if loss_fn is not None:
            loss_fn.gather_distributed = self.trainer.world_size > 1
        if self._bank_rows is not None and self.projections is None and self.trainer.is_global_zero:
            self.projections = ProjectionBank(self._bank_rows, self.config.model.head_dim)

    def on_train_start(self) -> None:
        self.generator = torch.Generator(device=self.device)
        self._started = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall-clock seconds of training so far, over every process that trained this run (a resumed run
        adds the time recorded in its checkpoint; time lost after the last checkpoint is not counted)."""
        return self._seconds_before + time.perf_counter() - self._started

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels, rows = batch
        # The views are a function of (seed, step) and of the image's place in the global batch: a run
        # resumed from any checkpoint, also one saved in the middle of an epoch, sees exactly the views an
        # uninterrupted run would have seen, and W processes draw the views one process would (each process
        # draws the global batch's choices and keeps the rows of its images: positions rank, rank + W, ...
        # of the sampler's global batch).
        self.generator.manual_seed((self.config.train.seed * 1_000_003 + self.global_step) * 1_009)
        world = self.trainer.world_size
        height, width = images.shape[2:]
        params = self.augment.sample(images.shape[0] * world, height, width, images.device, self.generator)
        if world > 1:
            params = params.select(slice(self.global_rank, None, world))
        views = self.augment.apply(images, params)  # [B, V, 3, S, S]
        n, v = views.shape[:2]
        # [B * V, 3, S, S] in the weights' dtype (64-true precision trains in float64)
        flat = views.flatten(0, 1).to(next(self.encoder.parameters()).dtype)
        if self.config.model.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        loss, z = self.objective(self.encoder, Batch(flat, n, v, labels, rows, self.cluster_ids[rows]))
        if self._bank_rows is not None and z is not None:
            # every rank takes part in the gather; rank 0 keeps the rows (the sampler gives every rank
            # batches of one size, and the loss has gathered this batch already: no size check per step)
            shown_rows = gather_no_grad(rows, same_size=True)
            shown = gather_no_grad(z[:, 0].detach(), same_size=True)
            if self.projections is not None:
                self.projections.record(shown_rows, shown, self.current_epoch)
        # the step value is this rank's (no all-reduce on the hot path); the epoch mean is reduced once per epoch
        self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        self._accumulate(loss)
        self.log(
            "train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=n
        )
        return loss

    def _accumulate(self, loss: Tensor) -> None:
        if self._loss_steps and self._loss_epoch != self.current_epoch:
            self._finish_epoch_loss()  # resumed from a checkpoint taken after an epoch's last step
        self._loss_epoch = self.current_epoch
        self._loss_sum = loss.detach().float() + (0 if self._loss_sum is None else self._loss_sum)
        self._loss_steps += 1

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        mean = self._finish_epoch_loss()
        if mean is not None:
            # the mean is the same on every rank already; syncing it keeps Lightning's bookkeeping simple
            self.log("train/loss_epoch", mean, on_step=False, on_epoch=True, sync_dist=True)
        if self.announce_epochs and self.global_rank == 0:
            seconds = time.perf_counter() - self._epoch_started
            loss = "n/a" if mean is None else f"{mean:.4f}"
            log.info(
                "epoch %d/%d: loss %s, %.1f s", self.current_epoch + 1, self.trainer.max_epochs, loss, seconds
            )

    def _finish_epoch_loss(self) -> float | None:
        """Record the mean loss of the epoch summed so far (over all ranks) and start a new sum."""
        if not self._loss_steps or self._loss_sum is None:
            return None
        total = torch.stack(
            [self._loss_sum, torch.tensor(float(self._loss_steps), device=self._loss_sum.device)]
        )
        total = self.trainer.strategy.reduce(total, reduce_op="sum") if self.trainer.world_size > 1 else total
        mean = float(total[0] / total[1])
        self.epoch_losses[self._loss_epoch] = mean
        self.epoch_samples[self._loss_epoch] = round(float(total[1])) * self.config.optim.batch_size
        self._loss_sum, self._loss_steps = None, 0.0
        return mean

    def configure_optimizers(self):
        optim = self.config.optim
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:  # a frozen stage (model.freeze_stages)
                continue
            # the usual exemption of BatchNorm and bias parameters from weight decay
            (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
        global_batch = optim.batch_size * self.trainer.world_size
        #: the learning rate the optimizer starts from (``optim.lr`` scaled as ``optim.lr_scaling`` says)
        self.lr = scaled_lr(optim, global_batch)
        if self.lr != optim.lr:
            log.info(
                "learning rate %.4g: optim.lr %g scaled (%s) to the global batch of %d",
                self.lr,
                optim.lr,
                optim.lr_scaling,
                global_batch,
            )
        optimizer = build_optimizer(self.config.optim, decay, no_decay, self.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, round(optim.warmup_epochs * total / max(1, self.trainer.max_epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the curve so far and the running sum of an unfinished epoch, so a resumed run's curve is exact
        unfinished = self._unfinished_epoch_over_ranks()
        progress = LossProgress(
            dict(self.epoch_losses),
            self._loss_epoch,
            unfinished["sum"],
            unfinished["steps"],
            self.train_seconds(),
            dict(self.epoch_samples),
        )
        CheckpointMeta(self.encoder_info(), self.trainer.world_size, progress).write_into(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        progress = CheckpointMeta.read(checkpoint, "the checkpoint").progress
        self._seconds_before = progress.train_seconds
        self.epoch_losses = dict(progress.epochs)
        self.epoch_samples = dict(progress.samples)
        # the sum is over every process of the run: each takes an equal share, so the epoch's reduction
        # adds them up again (a resume has as many processes: the engine checks it)
        world = self.trainer.world_size if self._trainer is not None else 1
        self._loss_epoch, self._loss_steps = progress.epoch, progress.steps / world
        self._loss_sum = torch.tensor(progress.sum / world) if self._loss_steps else None

    def _unfinished_epoch_over_ranks(self) -> dict[str, float]:
        """``sum`` and ``steps`` of the unfinished epoch's losses, added over every process (a collective:
        Lightning builds a checkpoint on every process)."""
        partial = torch.tensor(
            [0.0 if self._loss_sum is None else float(self._loss_sum), float(self._loss_steps)],
            device=self.device,
        )
        if self._trainer is not None and self.trainer.world_size > 1:
            partial = self.trainer.strategy.reduce(partial, reduce_op="sum")
        return {"sum": float(partial[0]), "steps": float(partial[1])}

    def encoder_info(self) -> EncoderInfo:
        """What rebuilds and feeds the encoder besides its weights: the model settings and the input pipeline
        (the rest of the config is the run directory's config.yaml)."""
        return EncoderInfo(
            model=self.config.model,
            crop_size=self.augment.image_size,
            mean=tuple(self.augment.mean.flatten().tolist()),
            std=tuple(self.augment.std.flatten().tolist()),
            input=self.image_input,
            start=self.start,
        )

    def trained_encoder(self, class_names: Sequence[str]) -> Encoder:
        """The encoder as trained so far, with its input pipeline (a copy on the CPU, in eval mode)."""
        info = self.encoder_info()
        state = {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()}
        return Encoder(
            network_with_weights(info, state, "the trained encoder"), info, class_names=class_names
        )


def scaled_lr(optim: OptimConfig, global_batch: int) -> float:
    """``optim.lr`` for a global batch of ``global_batch`` images, as ``optim.lr_scaling`` says (``linear``:
    proportional to ``global_batch / optim.lr_reference_batch``; ``sqrt``: to its square root)."""
    ratio = global_batch / optim.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[optim.lr_scaling]
    return optim.lr * factor


def build_optimizer(
    optim: OptimConfig, decay: list[nn.Parameter], no_decay: list[nn.Parameter], lr: float | None = None
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum, the paper's) or AdamW, weight decay only on ``decay``, at ``lr`` (default
    ``optim.lr``)."""
    lr = optim.lr if lr is None else lr
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if optim.name == "sgd":
        nesterov = optim.nesterov and optim.momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=nesterov)
    raise ValueError(f"unknown optimizer {optim.name!r}")


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear from ~0 to 1 over ``warmup`` steps, then cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class ProjectionBank:
    """The newest L2-normalised projection the training steps computed for each table row (its first view)
    and the epoch it is from, so K-means can cluster the previous epoch's features without a separate pass
    (DeepCluster-v2). Rows the loader left out of an epoch (``drop_last``) keep an older one. Not saved in
    checkpoints: after a resume the bank is empty and the next re-clustering makes its own pass.

    Args:
        n_rows: rows of the dataset table.
        dim: projection size.
    """

    def __init__(self, n_rows: int, dim: int) -> None:
        self.features = torch.zeros(n_rows, dim)  # on the CPU
        self.epoch = torch.full((n_rows,), -1, dtype=torch.long)  # the epoch each row was written in

    def record(self, rows: Tensor, projections: Tensor, epoch: int) -> None:
        """Store ``projections`` ``[B, D]`` of table ``rows`` ``[B]`` seen in ``epoch``."""
        rows = rows.cpu()
        self.features[rows] = nn.functional.normalize(projections.float(), dim=1).cpu()
        self.epoch[rows] = epoch

    def newest(self, rows: np.ndarray, epoch: int) -> tuple[np.ndarray, int] | None:
        """``float32 [len(rows), D]`` the newest projections of ``rows`` and how many are older than
        ``epoch``; None when a row has none."""
        index = torch.from_numpy(np.asarray(rows))
        seen = self.epoch[index]
        if bool((seen < 0).any()):
            return None
        return self.features[index].numpy(), int((seen < epoch).sum())
