"""K-means Cl-InfoNCE (the paper's Algorithm 1): clusters of the model's own features, recomputed as
training goes.

Before epoch ``warmup_epochs`` every image is its own cluster (InfoNCE). From then on, at the start of every
``every``-th epoch, the whole training split is embedded with the evaluation transform (L2-normalised
projection-head outputs, as the authors did) -- or, with ``recluster_features: training``, the projections
the previous epoch's training steps computed are re-used (DeepCluster-v2; no extra pass) -- clustered with
K-means (faiss), and the new ids go into the module's ``cluster_ids`` buffer, which the loss reads until the
next re-clustering. The buffer travels in checkpoints, and this callback's state records which epoch was
clustered last, so a resumed run neither loses nor repeats a clustering.

With several processes, each embeds its share of the training split (the training projections are all on
rank 0 already), rank 0 alone gathers the features and runs K-means, and the ids are broadcast
(:func:`kmeans_across_ranks`): no other process ever holds all ``N x D`` features.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from clinfonce.clusters import ClusterAssignment, ClusterSpec, kmeans_clusters, labelled_cluster_stats
from clinfonce.data.dataset import ImageDataset
from clinfonce.dist import broadcast_from_rank_zero, broadcast_object, gather_to_rank_zero, rank, world_size
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
            self._recluster(module, epoch)
        self._epoch_started = time.perf_counter()

    def _recluster(self, module: L.LightningModule, epoch: int) -> None:
        started = time.perf_counter()
        share, positions, source, older = self._features(module, epoch)
        ids, assignment = kmeans_across_ranks(
            share, positions, len(self.rows), self.spec, seed=self.spec.seed + epoch, device=module.device
        )
        module.cluster_ids[torch.from_numpy(self.rows).to(module.device)] = ids.to(module.device)
        self.clustered_epoch = epoch
        if assignment is None:  # not rank 0: the report is rank 0's
            return
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {
            "epoch": epoch,
            "features": source,
            "older_features": older,
            "n_clusters": assignment.n_clusters,
            "seconds": round(seconds, 3),
            "epoch_seconds": None if self._last_epoch_seconds is None else round(self._last_epoch_seconds, 3),
        }
        stats = labelled_cluster_stats(assignment.ids, self.dataset.table["label"].to_numpy()[self.rows])
        if stats is not None:
            row.update(I_Z_T=round(stats.I_Z_T, 6), H_Z_given_T=round(stats.H_Z_given_T, 6))
        self.run.append_recluster(row)
        log.info(
            "epoch %d: K-means on %d training images -> %d clusters (%.1f s)",
            epoch + 1,
            len(self.rows),
            assignment.n_clusters,
            seconds,
        )

    def _features(self, module: L.LightningModule, epoch: int) -> tuple[np.ndarray, np.ndarray, str, int]:
        """This process's share of the features to cluster: ``float32 [n_r, D]``, their positions in
        ``rows`` ``int64 [n_r]``, where they come from (``training`` or ``pass``) and how many are older than
        the previous epoch. The training projections are all on rank 0 (the others' share is empty); a pass
        embeds ``rows[rank::world_size]`` on each rank."""
        bank = getattr(module, "projections", None)
        newest = None
        if self.spec.recluster_features == "training":
            newest = bank.newest(self.rows, epoch - 1) if bank is not None else None
            if broadcast_object(newest is not None):  # rank 0 holds the bank and decides
                if newest is None:
                    return np.zeros((0, module.config.model.head_dim), np.float32), _NO_ROWS, "training", 0
                return newest[0], np.arange(len(self.rows)), "training", newest[1]
            log.info("epoch %d: a training image has no projection yet: K-means makes a pass", epoch + 1)
        positions = np.arange(len(self.rows))[rank() :: world_size()]
        return self._embed(module, self.rows[positions]), positions, "pass", 0

    def _embed(self, module: L.LightningModule, rows: np.ndarray) -> np.ndarray:
        """``float32 [len(rows), D]``: L2-normalised head outputs of ``rows``, evaluation transform."""
        transform = module.augment.eval_transform()
        features = extract_features(
            module.encoder, self.dataset, rows, transform, self.batch_size, projection=True
        )
        return torch.nn.functional.normalize(torch.from_numpy(features), dim=1).numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"clustered_epoch": self.clustered_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.clustered_epoch = state_dict.get("clustered_epoch")


_NO_ROWS = np.zeros(0, dtype=np.int64)


def kmeans_across_ranks(
    share: np.ndarray,
    positions: np.ndarray,
    n: int,
    spec: ClusterSpec,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, ClusterAssignment | None]:
    """K-means of ``n`` points whose features are held in shares by the processes of a group.

    Rank 0 receives every share (it is the only process that ever holds all ``n x D`` features), runs
    :func:`~clinfonce.clusters.kmeans_clusters` with ``spec``'s ``k`` (at most ``n``), ``spherical``,
    ``restarts`` and ``points_per_centroid``, and broadcasts the ids; so the ids equal one process's
    K-means on the whole array. Without a process group: that K-means.

    Args:
        share: ``float32 [n_r, D]`` this process's features (``n_r`` may be 0).
        positions: ``int64 [n_r]`` the point each row of ``share`` is; together the ranks hold each of
            ``0..n-1`` exactly once.
        n: number of points.
        spec: the ``kmeans`` specification.
        seed: K-means seed.
        device: where the transfers happen (the process group backend's: CUDA for NCCL).

    Returns:
        ``int64 [n]`` the cluster of every point (on ``device``), on every rank; and the assignment with
        its provenance on rank 0 (None on the others).
    """
    parts = gather_to_rank_zero(torch.from_numpy(np.ascontiguousarray(share, dtype=np.float32)), device)
    where = gather_to_rank_zero(torch.from_numpy(np.asarray(positions, dtype=np.int64)), device)
    ids = torch.empty(n, dtype=torch.long, device=device)
    assignment, failure = None, None
    if parts is not None and where is not None:
        try:
            order = torch.cat(where).cpu().numpy()
            if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
                raise ValueError(f"the shares hold {len(order)} positions, not each of the {n} points once")
            features = np.empty((n, share.shape[1]), dtype=np.float32)
            features[order] = torch.cat([part.cpu() for part in parts]).numpy()
            assignment = kmeans_clusters(
                features,
                min(spec.k, n),
                seed=seed,
                spherical=spec.spherical,
                nredo=spec.restarts,
                max_points_per_centroid=spec.points_per_centroid,
            )
            ids.copy_(torch.from_numpy(assignment.ids))
        except Exception as error:  # e.g. non-finite features of a diverged model (InputError), memory
            failure = error
    # every rank learns of a failure on rank 0 and raises it, instead of waiting for ids that never come
    message = broadcast_object(None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"K-means failed on rank 0: {message}")
    return broadcast_from_rank_zero(ids), assignment
