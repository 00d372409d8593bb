"""Stage 1 as ``clinfonce clusters`` does it, for Python: the clusters of a metadata table or a dataset,
their statistics against the labels, and the warnings about clusterings that will not help."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.clusters.builder import build, build_for_dataset
from clinfonce.clusters.spec import ClusterSpec
from clinfonce.clusters.stats import SAME_AS_LABELS_WARNING, ClusterStats, cluster_stats, clustering_warnings
from clinfonce.data.dataset import ImageDataset
from clinfonce.errors import InputError


@dataclass(frozen=True)
class Clustering:
    """Stage 1 of some data, with what it says about the labels.

    Attributes:
        clusters: one cluster id per row of the data, with the provenance.
        stats: the clusters against the labels, over the rows that have one (None without labels).
        warnings: clusterings Cl-InfoNCE cannot learn from as intended (one cluster; the labels themselves).
        columns: what :meth:`save` writes beside the ids: ``path`` and ``label`` when known.
        files: the CSV and the provenance JSON written (empty when nothing was).
    """

    clusters: ClusterAssignment
    stats: ClusterStats | None
    warnings: list[str]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """What ``clinfonce clusters`` prints: the counts and files, the attributes combined, the warnings,
        then the statistics."""
        clusters = self.clusters
        wrote = f"; wrote {' and '.join(map(str, self.files))}" if self.files else ""
        lines = [f"{clusters.n} rows -> {clusters.n_clusters} clusters{wrote}"]
        if clusters.provenance.get("method") == "attributes":
            lines.append(f"attributes (by entropy): {', '.join(clusters.provenance['attributes'])}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return lines + (self.stats.summary_lines(warnings=False) if self.stats is not None else [])

    def save(self, out: str | os.PathLike) -> list[Path]:
        """Write the CSV (``path`` and ``label`` when known, then ``cluster``) and its provenance JSON."""
        json_path = self.clusters.save(out, columns=self.columns)
        return [Path(out), json_path]


def cluster(
    spec: ClusterSpec | Mapping[str, Any],
    data: ImageDataset | pd.DataFrame | str | os.PathLike,
    *,
    label_col: str | None = None,
    path_col: str | None = None,
    out: str | os.PathLike | None = None,
) -> Clustering:
    """Cluster the rows of a metadata table, or the images of a dataset, as ``spec`` says.

    Args:
        spec: a :class:`ClusterSpec`, or the fields of a config's ``clusters`` section (the source may be
            left to what they imply, see :meth:`ClusterSpec.from_fields`).
        data: a loaded dataset (its own auxiliary information and labels), a table, or a table's file
            (``.csv``, ``.tsv``, ``.txt``, ``.parquet``).
        label_col: for a table, the class of each row: used by ``hierarchy`` and ``labels``, copied to the
            output and scored against.
        path_col: for a table, the image path column to copy to the output (default ``path`` if present).
        out: write the clusters there (CSV + provenance JSON beside it); checked before any work.

    Raises:
        InputError: naming the file, column, row or setting at fault.
    """
    from clinfonce.data.tables import check_writable, read_table, require_columns

    if out is not None:
        check_writable(out)
    if not isinstance(spec, ClusterSpec):
        spec = ClusterSpec.from_fields(spec, for_dataset=isinstance(data, ImageDataset))
    columns: dict[str, list[Any]] = {}
    if isinstance(data, ImageDataset):
        if label_col is not None or path_col is not None:
            raise InputError("a dataset has its own labels and paths: label_col and path_col are for tables")
        table = data.table
        assignment = build_for_dataset(spec, data)
        names = np.array([*data.class_names, None], dtype=object)
        labels = pd.Series(names[table["label"].to_numpy()], dtype=object)
        if "path" in table.columns:
            columns["path"] = table["path"].tolist()
        columns["label"] = labels.tolist()
    else:
        where = "the table" if isinstance(data, pd.DataFrame) else str(data)
        table = data if isinstance(data, pd.DataFrame) else read_table(data, tag_columns=spec.tags or ())
        path_col = path_col or ("path" if "path" in table.columns else None)
        require_columns(table, [c for c in (path_col, label_col) if c], where)
        labels = table[label_col] if label_col else None
        assignment = build(spec, table, classes=labels, name=where)
        if path_col:
            columns["path"] = table[path_col].tolist()
        if labels is not None and label_col != path_col:
            columns["label"] = labels.tolist()
    if assignment is None:
        raise InputError("clusters.source none makes no clusters")
    stats = None
    if labels is not None:
        labelled = labels.notna().to_numpy()
        if labelled.any():
            stats = cluster_stats(assignment.ids[labelled], labels.to_numpy()[labelled])
    # one cluster over all rows; else, over the labelled rows, the same partition as the labels
    warnings = clustering_warnings(assignment.ids)
    if not warnings and stats is not None and stats.same_as_labels:
        warnings = [SAME_AS_LABELS_WARNING]
    result = Clustering(assignment, stats, warnings, columns)
    if out is None:
        return result
    return Clustering(assignment, stats, warnings, columns, result.save(out))
