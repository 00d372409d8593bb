"""What each method minimises, given the encoder and a batch of augmented views.

An objective is an ``nn.Module`` called with the encoder and one :class:`Batch`; it returns the loss and,
for the contrastive objectives, the projections ``[B, V, D]`` of the encoder's head (which K-means may
re-use, see :class:`~clinfonce.training.recluster.Recluster`). :data:`OBJECTIVES` maps every method of
:data:`clinfonce.methods.METHODS` to the function that builds its objective from :class:`ObjectiveInputs`;
:mod:`clinfonce.methods` says what each method learns from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clinfonce.config import Config
from clinfonce.losses import ClInfoNCELoss, image_attribute_infonce
from clinfonce.models import Network, ProjectionHead


@dataclass(frozen=True)
class Batch:
    """One training batch, augmented.

    Attributes:
        views: ``[B * V, 3, S, S]`` the augmented views, sample-major (the V views of image 0 first).
        n: images B.
        v: views per image V.
        labels: ``int64 [B]`` downstream labels (-1: none).
        rows: ``int64 [B]`` the images' dataset table rows.
        clusters: ``int64 [B]`` stage-1 cluster ids (< 0: no cluster, the image is its own).
    """

    views: Tensor
    n: int
    v: int
    labels: Tensor
    rows: Tensor
    clusters: Tensor


@dataclass(frozen=True)
class ObjectiveInputs:
    """What an objective is built from.

    Attributes:
        config: the run configuration.
        encoder: the encoder being trained (its sizes).
        n_classes: downstream classes.
        n_clusters: stage-1 clusters (None without fixed stage-1 clusters).
        attribute_targets: ``int8 [n_rows, A]`` the clustered binary attributes per table row, +1 / -1 / 0
            (missing or outside training), or None when the method does not learn attributes.
        tag_vectors: ``scipy.sparse.csr_array`` ``float32 [n_rows, T]``, the tag vectors per table row (zero
            outside training) for soft positives (``method.positives: tags``), else None.
    """

    config: Config
    encoder: Network
    n_classes: int
    n_clusters: int | None = None
    attribute_targets: np.ndarray | None = None
    tag_vectors: Any = None

    def loss_fn(self) -> ClInfoNCELoss:
        """The Cl-InfoNCE loss at the method's temperature."""
        method = self.config.method
        return ClInfoNCELoss(temperature=method.temperature, base_temperature=method.base_temperature)

    def targets(self) -> Tensor:
        """``int8 [n_rows, A]`` attribute targets; ``ValueError`` when there are none."""
        if self.attribute_targets is None:
            raise ValueError(f"{self.config.method.name} needs the attribute targets")
        return torch.from_numpy(np.asarray(self.attribute_targets, dtype=np.int8))


class SparseRows(nn.Module):
    """The rows of a sparse ``[n_rows, T]`` matrix, looked up by table row on the batch's device.

    The matrix is kept as CSR buffers (not saved in checkpoints: it is data, rebuilt by stage 1).
    """

    indptr: Tensor
    indices: Tensor
    values: Tensor

    def __init__(self, matrix: Any) -> None:
        super().__init__()
        self.n_columns = int(matrix.shape[1])
        self.register_buffer("indptr", torch.from_numpy(np.asarray(matrix.indptr, dtype=np.int64)), False)
        self.register_buffer("indices", torch.from_numpy(np.asarray(matrix.indices, dtype=np.int64)), False)
        self.register_buffer("values", torch.from_numpy(np.asarray(matrix.data, dtype=np.float32)), False)

    def forward(self, rows: Tensor) -> Tensor:
        """Sparse COO ``float32 [B, T]``: the matrix's rows ``rows`` (``int64 [B]``), in that order."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        batch_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
        first = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
        position = first + torch.arange(len(batch_row), device=rows.device)  # into indices / values
        return torch.sparse_coo_tensor(
            torch.stack([batch_row, self.indices[position]]),
            self.values[position],
            (len(rows), self.n_columns),
            is_coalesced=True,
            check_invariants=False,
        )


class Contrastive(nn.Module):
    """Cl-InfoNCE on the encoder's head with positives from ``positives``: ``instance`` (SimCLR),
    ``labels`` (SupCon), ``clusters`` (Cl-InfoNCE) or ``tags`` (soft positives from ``tag_rows``, the tag
    vector of each table row); optionally plus InfoNCE on a second head, 1:1."""

    def __init__(
        self,
        loss_fn: ClInfoNCELoss,
        positives: str,
        instance_head: ProjectionHead | None,
        tag_rows: SparseRows | None = None,
    ) -> None:
        super().__init__()
        self.loss_fn, self.positives, self.instance_head = loss_fn, positives, instance_head
        self.tag_rows = tag_rows

    def forward(self, encoder: Network, batch: Batch) -> tuple[Tensor, Tensor | None]:
        features = encoder.features(batch.views)  # [B * V, F]
        z = encoder.head(features).view(batch.n, batch.v, -1)
        if self.positives == "tags":
            loss = self.loss_fn(z, pos_vectors=self.tag_rows(batch.rows))
        else:
            loss = self.loss_fn(z, self._ids(batch))
        if self.instance_head is not None:
            loss = loss + self.loss_fn(self.instance_head(features).view(batch.n, batch.v, -1), None)
        return loss, z

    def _ids(self, batch: Batch) -> Tensor | None:
        if self.positives == "instance":
            return None
        if self.positives == "labels":
            return batch.labels
        # rows without a stage-1 cluster (should not reach training) are their own cluster
        return torch.where(batch.clusters >= 0, batch.clusters, -1 - batch.rows)


class Classification(nn.Module):
    """Cross-entropy of a linear classifier on the backbone features, predicting the downstream label
    (``target="labels"``) or the stage-1 cluster id (``"clusters"``, ``n_outputs`` = number of clusters;
    rows without a cluster are left out)."""

    def __init__(self, feature_dim: int, n_outputs: int, target: str) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, n_outputs)
        self.target = target

    def forward(self, encoder: Network, batch: Batch) -> tuple[Tensor, Tensor | None]:
        logits = self.classifier(encoder.features(batch.views))  # [B, n_outputs] (one view per image)
        target = batch.labels if self.target == "labels" else batch.clusters
        valid = target >= 0
        losses = nn.functional.cross_entropy(logits, target.clamp(min=0), reduction="none")
        return (losses * valid).sum() / valid.sum().clamp(min=1), None


class AttributePrediction(nn.Module):
    """Multi-label binary cross-entropy of a linear head on the backbone features predicting the binary
    attributes; missing values are left out of the mean.

    Args:
        feature_dim: backbone features F.
        targets: ``int8 [n_rows, A]``: +1 / -1 / 0 (missing) per table row (0 for rows outside training).
    """

    targets: Tensor

    def __init__(self, feature_dim: int, targets: Tensor) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, targets.shape[1])
        self.register_buffer("targets", targets.to(torch.int8))

    def forward(self, encoder: Network, batch: Batch) -> tuple[Tensor, Tensor | None]:
        logits = self.classifier(encoder.features(batch.views))  # [B, A]
        target = self.targets[batch.rows]
        known = target != 0
        losses = nn.functional.binary_cross_entropy_with_logits(
            logits, (target > 0).to(logits.dtype), reduction="none"
        )
        return (losses * known).sum() / known.sum().clamp(min=1), None


class ImageAttributeContrast(nn.Module):
    """InfoNCE between the image projections and an MLP embedding of each image's attribute vector
    (:func:`clinfonce.losses.image_attribute_infonce`).

    Args:
        head_dim: size of both embeddings.
        targets: ``int8 [n_rows, A]``: +1 / -1 / 0 (missing); the MLP reads them as numbers.
        temperature: of the softmax.
    """

    targets: Tensor

    def __init__(self, head_dim: int, targets: Tensor, temperature: float) -> None:
        super().__init__()
        n_attributes = targets.shape[1]
        hidden = max(64, 2 * head_dim)
        # no BatchNorm: a batch may hold a single distinct attribute vector
        self.attribute_encoder = nn.Sequential(
            nn.Linear(n_attributes, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, head_dim)
        )
        self.register_buffer("targets", targets.to(torch.int8))
        self.temperature = temperature

    def forward(self, encoder: Network, batch: Batch) -> tuple[Tensor, Tensor | None]:
        z = encoder(batch.views).view(batch.n, batch.v, -1)
        distinct, attribute_of = torch.unique(self.targets[batch.rows], dim=0, return_inverse=True)
        embedded = self.attribute_encoder(distinct.to(z.dtype))  # [U, D]
        return image_attribute_infonce(z, embedded, attribute_of, self.temperature), z


def _contrastive(positives: str) -> Callable[[ObjectiveInputs], nn.Module]:
    def build(inputs: ObjectiveInputs) -> nn.Module:
        encoder, method = inputs.encoder, inputs.config.method
        extra = (
            ProjectionHead(encoder.feature_dim, encoder.feature_dim, inputs.config.model.head_dim)
            if method.joint_infonce
            else None
        )
        if positives == "clusters" and method.positives == "tags":
            if inputs.tag_vectors is None:
                raise ValueError("method.positives=tags needs the tag vectors")
            return Contrastive(inputs.loss_fn(), "tags", extra, SparseRows(inputs.tag_vectors))
        return Contrastive(inputs.loss_fn(), positives, extra)

    return build


def _cluster_classifier(inputs: ObjectiveInputs) -> nn.Module:
    if not inputs.n_clusters:
        raise ValueError("cluster_ce needs the number of stage-1 clusters")
    return Classification(inputs.encoder.feature_dim, inputs.n_clusters, "clusters")


#: The objective of every method (a key of :data:`clinfonce.methods.METHODS`): a function of the inputs.
OBJECTIVES: dict[str, Callable[[ObjectiveInputs], nn.Module]] = {
    "clinfonce": _contrastive("clusters"),
    "simclr": _contrastive("instance"),
    "supcon": _contrastive("labels"),
    "ce": lambda inputs: Classification(inputs.encoder.feature_dim, inputs.n_classes, "labels"),
    "cluster_ce": _cluster_classifier,
    "attr_bce": lambda inputs: AttributePrediction(inputs.encoder.feature_dim, inputs.targets()),
    "attr_infonce": lambda inputs: ImageAttributeContrast(
        inputs.config.model.head_dim, inputs.targets(), inputs.config.method.temperature
    ),
}


def build_objective(inputs: ObjectiveInputs) -> nn.Module:
    """The objective of ``inputs.config.method.name``."""
    return OBJECTIVES[inputs.config.method.name](inputs)
