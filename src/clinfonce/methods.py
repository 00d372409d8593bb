"""The training methods: what each one learns from, in one table.

Every method trains the same encoder with the same engine and is evaluated by the same linear probe; they
differ in the supervision they use:

- ``simclr``: nothing (every image is its own cluster: InfoNCE / NT-Xent);
- ``clinfonce``: the stage-1 clusters (Cl-InfoNCE, the paper's method);
- ``supcon``: the downstream labels (Cl-InfoNCE with the labels as clusters: the supervised upper bound);
- ``ce``: the downstream labels, by cross-entropy on the backbone features;
- the weakly-supervised baselines, which use the same auxiliary information as Cl-InfoNCE in another way:
  ``cluster_ce`` (predict the stage-1 cluster id with cross-entropy), ``attr_bce`` (predict the top-k binary
  attributes the clusters are made of, multi-label binary cross-entropy) and ``attr_infonce`` (contrast each
  image with a learned embedding of its attribute vector, CMC/CLIP style).
"""

from __future__ import annotations

from dataclasses import dataclass

#: What a method learns from.
USES = ("nothing", "labels", "clusters", "attributes")


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the value of ``method.name``.
        uses: ``nothing``, ``labels``, ``clusters`` (stage-1 cluster ids) or ``attributes`` (the binary
            attributes behind attribute clusters).
        contrastive: trains on ``method.views`` augmented views per image (else on one).
        summary: one line for help texts and reports.
    """

    name: str
    uses: str
    contrastive: bool
    summary: str

    @property
    def needs_stage1(self) -> bool:
        """Whether the method reads the ``clusters`` section (auxiliary information or K-means)."""
        return self.uses in ("clusters", "attributes")


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("clinfonce", "clusters", True, "Cl-InfoNCE on the stage-1 clusters"),
        Method("simclr", "nothing", True, "InfoNCE, every image its own cluster (no supervision)"),
        Method("supcon", "labels", True, "Cl-InfoNCE with the downstream labels as clusters (upper bound)"),
        Method("ce", "labels", False, "cross-entropy on the downstream labels"),
        Method("cluster_ce", "clusters", False, "cross-entropy predicting the stage-1 cluster id"),
        Method("attr_bce", "attributes", False, "binary cross-entropy predicting the clustered attributes"),
        Method(
            "attr_infonce", "attributes", True, "InfoNCE between images and an embedding of their attributes"
        ),
    )
}


def method(name: str) -> Method:
    """The method called ``name`` (``KeyError`` if none; configs check the name first)."""
    return METHODS[name]
