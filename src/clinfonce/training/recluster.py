"""K-means Cl-InfoNCE (the paper's Algorithm 1): clusters of the model's own features, recomputed as
training goes.

Before epoch ``warmup_epochs`` every image is its own cluster (InfoNCE). From then on, at the start of every
``every``-th epoch, the whole training split is embedded with the evaluation transform (L2-normalised
projection-head outputs, as the authors did) -- or, with ``recluster_features: training``, the projections
the previous epoch's training steps computed are re-used (DeepCluster-v2; no extra pass) -- clustered with K-means (faiss), and the new ids go into the
module's ``cluster_ids`` buffer, which the loss reads until the next re-clustering. The buffer travels in
checkpoints, and this callback's state records which epoch was clustered last, so a resumed run neither
loses nor repeats a clustering.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from clinfonce.clusters import ClusterSpec, cluster_stats, kmeans_clusters
from clinfonce.data.augment import EvalTransform
from clinfonce.data.dataset import ImageDataset
from clinfonce.features import extract_features
from clinfonce.run import RunDir

log = logging.getLogger(__name__)


class Recluster(Callback):
    """Re-cluster the training rows at the start of the epochs ``spec`` says; one row per re-clustering in
    the run's ``reclusters.csv`` (epoch, features (``pass`` or ``training``), older_features (with
    ``training``: images whose newest projection is older than the previous epoch), n_clusters, seconds (embedding
    and K-means), epoch_seconds (the training epoch before), and I(Z;T), H(Z|T) when labels exist:
    monitoring only, never used for training).

    Args:
        spec: the ``kmeans`` cluster specification (``k``, ``spherical``, ``seed``, ``every``,
            ``warmup_epochs``).
        dataset: the training data.
        rows: ``int64 [N]`` the training rows.
        run: where ``reclusters.csv`` goes (written by rank 0).
        batch_size: of the embedding pass.
    """

    def __init__(
        self, spec: ClusterSpec, dataset: ImageDataset, rows: np.ndarray, run: RunDir, batch_size: int
    ) -> None:
        self.spec, self.dataset, self.rows, self.run, self.batch_size = spec, dataset, rows, run, batch_size
        self.clustered_epoch: int | None = None  # the epoch whose start was clustered last
        self._epoch_started: float | None = None
        self._last_epoch_seconds: float | None = None

    def due(self, epoch: int) -> bool:
        """Whether the clusters are recomputed at the start of ``epoch``."""
        since = epoch - self.spec.warmup_epochs
        return since >= 0 and since % self.spec.every == 0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._epoch_started is not None:
            self._last_epoch_seconds = time.perf_counter() - self._epoch_started
        if self.due(epoch) and self.clustered_epoch != epoch:  # a mid-epoch resume keeps its clusters
            self._recluster(trainer, module, epoch)
        self._epoch_started = time.perf_counter()

    def _recluster(self, trainer: L.Trainer, module: L.LightningModule, epoch: int) -> None:
        started = time.perf_counter()
        features, source, older = None, "pass", 0
        bank = getattr(module, "projections", None)
        if self.spec.recluster_features == "training" and bank is not None:
            newest = bank.newest(self.rows, epoch - 1)
            if newest is None:
                log.info("epoch %d: a training image has no projection yet: K-means makes a pass", epoch + 1)
            else:
                (features, older), source = newest, "training"
        if features is None:
            features = self._embed(module)
        assignment = kmeans_clusters(
            features,
            min(self.spec.k, len(self.rows)),
            seed=self.spec.seed + epoch,
            spherical=self.spec.spherical,
        )
        module.cluster_ids[torch.from_numpy(self.rows).to(module.device)] = torch.from_numpy(
            assignment.ids
        ).to(module.device)
        self.clustered_epoch = epoch
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {
            "epoch": epoch,
            "features": source,
            "older_features": older,
            "n_clusters": assignment.n_clusters,
            "seconds": round(seconds, 3),
            "epoch_seconds": None if self._last_epoch_seconds is None else round(self._last_epoch_seconds, 3),
        }
        labels = self.dataset.table["label"].to_numpy()[self.rows]
        labelled = labels >= 0
        if labelled.any():
            stats = cluster_stats(assignment.ids[labelled], labels[labelled])
            row.update(I_Z_T=round(stats.I_Z_T, 6), H_Z_given_T=round(stats.H_Z_given_T, 6))
        if trainer.is_global_zero:
            self.run.append_recluster(row)
        log.info(
            "epoch %d: K-means on %d training images -> %d clusters (%.1f s)",
            epoch + 1,
            len(self.rows),
            assignment.n_clusters,
            seconds,
        )

    def _embed(self, module: L.LightningModule) -> np.ndarray:
        """``float32 [N, D]``: L2-normalised head outputs of the training rows, evaluation transform."""
        augment = module.augment
        transform = EvalTransform(
            augment.image_size, augment.mean.flatten().tolist(), augment.std.flatten().tolist()
        )
        transform = transform.to(module.device)
        features = extract_features(
            module.encoder, self.dataset, self.rows, transform, self.batch_size, projection=True
        )
        return torch.nn.functional.normalize(torch.from_numpy(features), dim=1).numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"clustered_epoch": self.clustered_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.clustered_epoch = state_dict.get("clustered_epoch")
