"""The cluster specification: what stage 1 should do, as plain typed settings.

One :class:`ClusterSpec` describes every stage-1 source. The ``clinfonce clusters`` command maps its flags
onto it, a config's ``clusters`` section is one, and :func:`clinfonce.clusters.builder` is the one function
that turns it into a :class:`~clinfonce.clusters.ClusterAssignment`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clinfonce.errors import InputError

#: Where the cluster ids come from.
SOURCES = ("attributes", "hierarchy", "labels", "file", "kmeans", "tag_kmeans", "none")
PATH_RULES = ("first", "shortest")
#: What K-means clusters during training: a separate pass over the training split, or the projections the
#: training steps of the previous epoch already computed (as DeepCluster-v2 does).
RECLUSTER_FEATURES = ("pass", "training")
#: How tags weigh in tag vectors (:meth:`clinfonce.clusters.tags.TagMatrix.weighted`).
TAG_WEIGHTINGS = ("binary", "tfidf")


@dataclass
class ClusterSpec:
    """Stage 1 as settings. Which fields matter depends on ``source``:

    - ``attributes``: ``attributes`` and ``tags`` (both unset: the dataset's own; naming either uses exactly
      what is named), ``top_k``, ``top_tags``, ``min_tag_count``, ``tag_separator``, ``bins``;
    - ``hierarchy``: ``hierarchy`` (unset: the dataset's own; ``wordnet``; or a ``child,parent`` CSV),
      ``level``, ``path_rule``, ``wordnet_dir``;
    - ``labels``: the downstream labels themselves (Cl-InfoNCE is then SupCon);
    - ``file``: ``file``, a clusters CSV written by ``clinfonce clusters`` (matched by ``path``);
    - ``tag_kmeans``: spherical K-means over the images' tag vectors (the columns ``tags`` and
      ``attributes`` name, as for ``attributes``; ``tag_weighting``, reduced to ``tag_dims`` by a
      truncated SVD): ``k``, ``seed``, ``restarts``, ``points_per_centroid``;
    - ``kmeans``: ``k``, ``spherical``, ``seed``, ``restarts``, ``points_per_centroid`` and ``features`` (an ``.npy`` of ``[N, D]`` features); in
      training without ``features``, the model's own (the paper's Algorithm 1): InfoNCE for
      ``warmup_epochs``, then K-means on the training set's L2-normalised head outputs every ``every`` epochs
      (``recluster_features``: from a separate pass, or those of the previous epoch's training steps);
    - ``none``: no clusters (SimCLR, SupCon and cross-entropy need none).
    """

    source: str = field(
        default="attributes",
        metadata={
            "help": "where the clusters come from",
            "choices": SOURCES,
            "unset": "implied by the fields",
        },
    )
    attributes: list[str] | None = field(
        default=None, metadata={"help": "attribute columns (unset with tags: the dataset's own)"}
    )
    tags: list[str] | None = field(
        default=None, metadata={"help": "tag columns (lists or delimited strings)"}
    )
    top_k: int = field(default=3, metadata={"help": "combine the k highest-entropy binary attributes"})
    top_tags: int | None = field(default=None, metadata={"help": "keep the most frequent tags per column"})
    tag_separator: str | None = field(
        default=None, metadata={"help": "tag delimiter (default: whitespace, comma, semicolon, bar)"}
    )
    min_tag_count: int = field(
        default=1, metadata={"help": "keep only tags held by at least this many images"}
    )
    tag_weighting: str = field(
        default="tfidf",
        metadata={
            "help": "tag vectors (tag_kmeans, soft positives): binary, or tfidf (rare tags weigh more)",
            "choices": TAG_WEIGHTINGS,
        },
    )
    tag_dims: int = field(
        default=256, metadata={"help": "tag_kmeans: dimensions the tag vectors are reduced to"}
    )
    bins: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "numeric column -> number of quantile bins or a list of bin edges"},
    )
    hierarchy: str | None = field(
        default=None,
        metadata={"help": "'wordnet', a child,parent CSV, or unset for the dataset's own hierarchy"},
    )
    level: int = field(default=12, metadata={"help": "depth of the ancestor that names a cluster (root = 0)"})
    path_rule: str = field(
        default="first",
        metadata={"help": "root path of a class with several parents", "choices": PATH_RULES},
    )
    wordnet_dir: str | None = field(
        default=None, metadata={"help": "WordNet 3.0 database directory (default /usr/share/wordnet)"}
    )
    file: str | None = field(default=None, metadata={"help": "a clusters CSV from `clinfonce clusters`"})
    k: int = field(default=100, metadata={"help": "number of K-means clusters (kmeans, tag_kmeans)"})
    spherical: bool = field(default=True, metadata={"help": "K-means on L2-normalised features (cosine)"})
    seed: int = field(default=0, metadata={"help": "K-means seed"})
    restarts: int = field(
        default=5, metadata={"help": "K-means restarts; the lowest objective is kept (the paper: 5)"}
    )
    points_per_centroid: int = field(
        default=256,
        metadata={
            "help": "K-means trains on a seeded random subsample of at most k x this many rows, then assigns "
            "every row to its nearest centroid in batches"
        },
    )
    features: str | None = field(
        default=None,
        metadata={
            "help": ".npy of [N, D] features, row i = row i of the data; unset in training: the model's own"
        },
    )
    # The fields below matter only in training (K-means on the model's own features): ``training_only``.
    every: int = field(
        default=1,
        metadata={
            "help": "training with the model's own features: re-cluster every this many epochs",
            "training_only": True,
        },
    )
    warmup_epochs: int = field(
        default=1,
        metadata={
            "help": "training with the model's own features: epochs of InfoNCE before the first clustering",
            "training_only": True,
        },
    )
    recluster_features: str = field(
        default="pass",
        metadata={
            "help": "training with the model's own features: pass (embed the training split with the "
            "evaluation transform) or training (the previous epoch's training projections: no extra pass)",
            "choices": RECLUSTER_FEATURES,
            "training_only": True,
        },
    )

    def check(self, name: Callable[[str], str] = lambda key: f"clusters.{key}") -> ClusterSpec:
        """Raise :class:`InputError` for a value out of range; ``name(field)`` is how the user wrote the field
        (a config key or a command-line flag). Opens no file. Returns self."""
        checks = [
            (self.source in SOURCES, "source", f"one of {', '.join(SOURCES)}"),
            (self.top_k >= 1, "top_k", ">= 1"),
            (self.top_tags is None or self.top_tags >= 1, "top_tags", ">= 1"),
            (self.min_tag_count >= 1, "min_tag_count", ">= 1"),
            (self.tag_weighting in TAG_WEIGHTINGS, "tag_weighting", " or ".join(TAG_WEIGHTINGS)),
            (self.tag_dims >= 1, "tag_dims", ">= 1"),
            (self.level >= 0, "level", ">= 0"),
            (self.path_rule in PATH_RULES, "path_rule", " or ".join(PATH_RULES)),
            (self.k >= 1, "k", ">= 1"),
            (0 <= self.seed < 2**31, "seed", "in 0..2^31-1"),
            (self.restarts >= 1, "restarts", ">= 1"),
            (self.points_per_centroid >= 1, "points_per_centroid", ">= 1"),
            (self.every >= 1, "every", ">= 1"),
            (self.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
            (
                self.recluster_features in RECLUSTER_FEATURES,
                "recluster_features",
                " or ".join(RECLUSTER_FEATURES),
            ),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise InputError(f"{name(key)} must be {expected}, got {getattr(self, key)!r}")
        if self.source == "file" and not self.file:
            raise InputError(f"{name('source')}=file needs {name('file')} (a clusters CSV)")
        return self

    @classmethod
    def from_fields(
        cls,
        values: Mapping[str, Any],
        *,
        for_dataset: bool = False,
        name: Callable[[str], str] = lambda key: f"clusters.{key}",
    ) -> ClusterSpec:
        """The checked spec of the given fields (None values are left at their defaults); without
        ``source``, the one the fields imply: ``attributes`` / ``tags`` give attributes, ``hierarchy``
        a hierarchy, ``features`` K-means, ``file`` a clusters file, and for a dataset (with its own
        auxiliary information) ``top_k`` alone its attributes and ``level`` alone its hierarchy.

        Raises:
            InputError: no source, or several, is implied; a value out of range (named by ``name``).
        """
        given = {key: value for key, value in values.items() if value is not None}
        source = given.pop("source", None)
        if source is None:
            implied = {
                "attributes": "attributes" in given or "tags" in given or (for_dataset and "top_k" in given),
                "hierarchy": "hierarchy" in given or (for_dataset and "level" in given),
                "kmeans": "features" in given,
                "file": "file" in given,
            }
            chosen = [key for key, used in implied.items() if used]
            if len(chosen) != 1:
                flags = ", ".join(
                    name(key) for key in ("attributes", "tags", "hierarchy", "features", "file")
                )
                raise InputError(
                    f"choose one source: {flags} or {name('source')} labels"
                    + (f" (got {' and '.join(chosen)})" if chosen else "")
                )
            source = chosen[0]
        return cls(source=source, **given).check(name)

    @property
    def reclusters(self) -> bool:
        """Whether training clusters the model's own features as it goes (K-means without a features file)."""
        return self.source == "kmeans" and self.features is None
