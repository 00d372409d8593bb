"""The training methods: what each one learns from, in one table.

Every method trains the same encoder with the same engine and is evaluated by the same linear probe; they
differ in the supervision they use:

- ``simclr``: nothing (every image is its own cluster: InfoNCE / NT-Xent);
- ``clinfonce``: the stage-1 clusters (Cl-InfoNCE, the paper's method);
- ``supcon``: the downstream labels (Cl-InfoNCE with the labels as clusters: the supervised upper bound);
- ``ce``: the downstream labels, by cross-entropy on the backbone features;
- ``pretrained``: nothing, and no training: the starting backbone (``model.pretrained`` or
  ``model.weights``) evaluated as it is, the baseline every fine-tuning comparison needs;
- the weakly-supervised baselines, which use the same auxiliary information as Cl-InfoNCE in another way:
  ``cluster_ce`` (predict the stage-1 cluster id with cross-entropy), ``attr_bce`` (predict the top-k binary
  attributes the clusters are made of, multi-label binary cross-entropy) and ``attr_infonce`` (contrast each
  image with a learned embedding of its attribute vector, CMC/CLIP style).

A method is its row here plus its objective in :data:`clinfonce.training.objectives.OBJECTIVES` (a method
that does not train has none): adding one touches those two places. Every rule elsewhere (config checks, the engine, reports, plot colours) reads the
fields of the row, never the method's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: What a method learns from: ``nothing``, ``labels`` (the downstream labels), ``clusters`` (stage-1 cluster
#: ids) or ``attributes`` (the binary attributes behind attribute clusters).
Uses = Literal["nothing", "labels", "clusters", "attributes"]


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the value of ``method.name``.
        uses: what it learns from (:data:`Uses`).
        contrastive: trains on ``method.views`` augmented views per image (else on one).
        summary: one line for help texts and reports.
        color: its colour in every plot (a matplotlib colour).
        fixed_clusters: needs cluster ids that stay the same during training (a classifier over them), so
            K-means re-clustering during training is refused.
        joint_infonce: may add InfoNCE on a second projection head (``method.joint_infonce``).
        soft_positives: may take soft positives from tag vectors instead of clusters
            (``method.positives: tags``).
        trains: trains at all (else the starting weights are evaluated as they are, in no time).
    """

    name: str
    uses: Uses
    contrastive: bool
    summary: str
    color: str
    fixed_clusters: bool = False
    joint_infonce: bool = False
    soft_positives: bool = False
    trains: bool = True

    @property
    def needs_stage1(self) -> bool:
        """Whether the method reads the ``clusters`` section (auxiliary information or K-means)."""
        return self.uses in ("clusters", "attributes")


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "clinfonce",
            "clusters",
            True,
            "Cl-InfoNCE on the stage-1 clusters",
            "#2b7bba",
            joint_infonce=True,
            soft_positives=True,
        ),
        Method("simclr", "nothing", True, "InfoNCE, every image its own cluster (no supervision)", "#8c8c8c"),
        Method(
            "supcon",
            "labels",
            True,
            "Cl-InfoNCE with the downstream labels as clusters (upper bound)",
            "#d95f02",
        ),
        Method("ce", "labels", False, "cross-entropy on the downstream labels", "#7570b3"),
        Method(
            "cluster_ce",
            "clusters",
            False,
            "cross-entropy predicting the stage-1 cluster id",
            "#1b9e77",
            fixed_clusters=True,
        ),
        Method(
            "attr_bce",
            "attributes",
            False,
            "binary cross-entropy predicting the clustered attributes",
            "#e7298a",
        ),
        Method(
            "attr_infonce",
            "attributes",
            True,
            "InfoNCE between images and an embedding of their attributes",
            "#66a61e",
        ),
        Method(
            "pretrained",
            "nothing",
            False,
            "the starting backbone, not trained (model.pretrained or model.weights as they are)",
            "#a6761d",
            trains=False,
        ),
    )
}
