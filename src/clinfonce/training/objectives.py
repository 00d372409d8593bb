"""What each method minimises, given the encoder and a batch of augmented views.

An objective is called with the encoder, the flattened views ``[B * V, 3, S, S]`` (sample-major), the batch
size B and views per image V, and the batch's labels, table rows and cluster ids (``int64 [B]`` each; a
cluster id < 0 means "no cluster": the image is its own). It returns the loss and, for the contrastive
objectives, the projections ``[B, V, D]`` of the encoder's head (which K-means may re-use, see
:class:`~clinfonce.training.recluster.Recluster`). Which objective a method uses is
:func:`build_objective`'s one table; :mod:`clinfonce.methods` says what each method learns from.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from clinfonce.config import Config
from clinfonce.losses import ClInfoNCELoss, image_attribute_infonce
from clinfonce.models import Encoder, ProjectionHead


class Contrastive(nn.Module):
    """Cl-InfoNCE on the encoder's head with positives from ``positives``: ``instance`` (SimCLR),
    ``labels`` (SupCon) or ``clusters`` (Cl-InfoNCE); optionally plus InfoNCE on a second head, 1:1."""

    def __init__(self, loss_fn: ClInfoNCELoss, positives: str, instance_head: ProjectionHead | None) -> None:
        super().__init__()
        self.loss_fn, self.positives, self.instance_head = loss_fn, positives, instance_head

    def forward(
        self, encoder: Encoder, views: Tensor, n: int, v: int, labels: Tensor, rows: Tensor, clusters: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        features = encoder.features(views)  # [B * V, F]
        z = encoder.head(features).view(n, v, -1)
        if self.positives == "instance":
            ids = None
        elif self.positives == "labels":
            ids = labels
        else:  # rows without a stage-1 cluster (should not reach training) are their own cluster
            ids = torch.where(clusters >= 0, clusters, -1 - rows)
        loss = self.loss_fn(z, ids)
        if self.instance_head is not None:
            loss = loss + self.loss_fn(self.instance_head(features).view(n, v, -1), None)
        return loss, z


class Classification(nn.Module):
    """Cross-entropy of a linear classifier on the backbone features, predicting the downstream label
    (``target="labels"``) or the stage-1 cluster id (``"clusters"``, ``n_outputs`` = number of clusters;
    rows without a cluster are left out)."""

    def __init__(self, feature_dim: int, n_outputs: int, target: str) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, n_outputs)
        self.target = target

    def forward(
        self, encoder: Encoder, views: Tensor, n: int, v: int, labels: Tensor, rows: Tensor, clusters: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.classifier(encoder.features(views))  # [B, n_outputs] (one view per image)
        target = labels if self.target == "labels" else clusters
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

    def forward(
        self, encoder: Encoder, views: Tensor, n: int, v: int, labels: Tensor, rows: Tensor, clusters: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.classifier(encoder.features(views))  # [B, A]
        target = self.targets[rows]
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

    def forward(
        self, encoder: Encoder, views: Tensor, n: int, v: int, labels: Tensor, rows: Tensor, clusters: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        z = encoder(views).view(n, v, -1)
        distinct, attribute_of = torch.unique(self.targets[rows], dim=0, return_inverse=True)
        embedded = self.attribute_encoder(distinct.to(z.dtype))  # [U, D]
        return image_attribute_infonce(z, embedded, attribute_of, self.temperature), z


def build_objective(
    config: Config,
    encoder: Encoder,
    n_classes: int,
    n_clusters: int | None = None,
    attribute_targets: np.ndarray | None = None,
) -> nn.Module:
    """The objective of ``config.method.name``.

    Args:
        config: the run configuration.
        encoder: the encoder being trained (its sizes).
        n_classes: downstream classes (``ce``).
        n_clusters: stage-1 clusters (``cluster_ce``).
        attribute_targets: ``int8 [n_rows, A]`` (``attr_bce``, ``attr_infonce``).
    """
    method = config.method
    loss_fn = ClInfoNCELoss(temperature=method.temperature, base_temperature=method.base_temperature)
    name = method.name
    if name in ("simclr", "supcon", "clinfonce"):
        positives = {"simclr": "instance", "supcon": "labels", "clinfonce": "clusters"}[name]
        extra = (
            ProjectionHead(encoder.feature_dim, encoder.feature_dim, config.model.head_dim)
            if method.joint_infonce
            else None
        )
        return Contrastive(loss_fn, positives, extra)
    if name == "ce":
        return Classification(encoder.feature_dim, n_classes, "labels")
    if name == "cluster_ce":
        if not n_clusters:
            raise ValueError("cluster_ce needs the number of stage-1 clusters")
        return Classification(encoder.feature_dim, n_clusters, "clusters")
    if attribute_targets is None:
        raise ValueError(f"{name} needs the attribute targets")
    targets = torch.from_numpy(np.asarray(attribute_targets, dtype=np.int8))
    if name == "attr_bce":
        return AttributePrediction(encoder.feature_dim, targets)
    if name == "attr_infonce":
        return ImageAttributeContrast(config.model.head_dim, targets, method.temperature)
    raise ValueError(f"unknown method {name!r}")
