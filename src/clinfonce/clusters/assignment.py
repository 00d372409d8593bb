"""The result of stage 1: one cluster id per sample, and how it was made."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfonce._io import json_default, write_json


@dataclass(frozen=True)
class ClusterAssignment:
    """Cluster ids of N samples, contiguous in ``0..K-1``, with their provenance.

    Attributes:
        ids: ``np.int64 [N]``; every id in ``0..K-1`` has at least one member.
        provenance: JSON-serialisable description of how the clusters were made (method, parameters,
            counts of special cases such as rows with missing values).
        keys: optional ``[K]`` strings; ``keys[c]`` is the original token of cluster ``c`` (an ancestor
            class, an attribute combination, ...). This is the mapping back from the contiguous ids.
    """

    ids: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1:
            raise ValueError(f"cluster ids must be one-dimensional, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"cluster ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        if ids.size:
            if ids.min() < 0:
                raise ValueError("cluster ids must be non-negative")
            sizes = np.bincount(ids)
            if (sizes == 0).any():
                empty = np.flatnonzero(sizes == 0)[:5].tolist()
                raise ValueError(f"cluster ids are not contiguous: clusters {empty} have no member")
        object.__setattr__(self, "ids", ids)
        if self.keys is not None:
            keys = tuple(self.keys)
            if not all(isinstance(key, str) for key in keys):
                keys = tuple(str(key) for key in keys)
            if len(keys) != self.n_clusters:
                raise ValueError(f"{len(keys)} keys given for {self.n_clusters} clusters")
            object.__setattr__(self, "keys", keys)
        json.dumps(self.provenance, default=json_default)  # fail early, not when saving

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.ids.size)

    @property
    def n_clusters(self) -> int:
        """Number of clusters K."""
        return int(self.ids.max()) + 1 if self.ids.size else 0

    @property
    def sizes(self) -> np.ndarray:
        """``np.int64 [K]``: members per cluster."""
        return np.bincount(self.ids, minlength=self.n_clusters).astype(np.int64)

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[Any] | np.ndarray,
        provenance: Mapping[str, Any],
        singleton_rows: np.ndarray | None = None,
    ) -> ClusterAssignment:
        """Remap arbitrary equality tokens to contiguous ids in a deterministic order.

        Clusters are numbered in sorted order of their tokens, so the same tokens always give the same ids
        (unlike Python ``set`` iteration order). The key of a cluster is its token as a string.

        Args:
            tokens: ``[N]`` hashable, mutually comparable tokens (ints, strings, bytes). Tokens of
                singleton rows are ignored.
            provenance: how the tokens were made; copied into the result.
            singleton_rows: optional ``bool [N]``, see :meth:`from_inverse`.
        """
        tokens = np.asarray(tokens)
        regular = _regular_rows(singleton_rows, len(tokens))
        unique, inverse = np.unique(tokens[regular], return_inverse=True)
        if unique.dtype.kind == "S":
            keys = unique.astype(str).tolist()
        else:
            keys = [str(token) for token in unique.tolist()]
        return cls.from_inverse(inverse.reshape(-1), keys, provenance, singleton_rows)

    @classmethod
    def from_inverse(
        cls,
        inverse: np.ndarray,
        keys: Sequence[str],
        provenance: Mapping[str, Any],
        singleton_rows: np.ndarray | None = None,
    ) -> ClusterAssignment:
        """Build an assignment from ids already in ``0..K-1`` for the regular rows.

        Rows flagged in ``singleton_rows`` (``bool [N]``), e.g. rows with missing auxiliary information,
        each get a cluster of their own, numbered after the others in row order; their key is
        ``"<singleton:row>"``.

        Args:
            inverse: ``int [N_regular]``: ids of the rows not flagged, in row order.
            keys: ``[K]`` the token of each regular cluster.
            provenance: how the ids were made; copied into the result.
            singleton_rows: optional ``bool [N]`` with ``N - N_regular`` True entries.
        """
        n = len(inverse) if singleton_rows is None else len(singleton_rows)
        regular = _regular_rows(singleton_rows, n)
        if np.count_nonzero(regular) != len(inverse):
            raise ValueError(f"{len(inverse)} ids given for {np.count_nonzero(regular)} regular rows")
        ids = np.empty(n, dtype=np.int64)
        ids[regular] = inverse
        singles = np.flatnonzero(~regular)
        ids[singles] = len(keys) + np.arange(len(singles))
        keys = [*keys, *(f"<singleton:{row}>" for row in singles)]
        return cls(ids=ids, provenance=dict(provenance), keys=tuple(keys))

    def save(self, path: str | os.PathLike, columns: Mapping[str, Sequence[Any]] | None = None) -> Path:
        """Write ``path`` (the given ``columns``, then ``cluster``) and the provenance JSON beside it.

        The table's format is the one its extension names (``.csv``, ``.tsv``, ``.parquet``; anything else is
        an :class:`~clinfonce.errors.InputError`, raised before anything is written). The JSON goes to
        ``path`` with suffix ``.json`` and holds the provenance, counts and the keys. Both files are written
        atomically. Returns the JSON path.
        """
        from clinfonce.data.tables import write_table

        path = Path(path)
        frame = pd.DataFrame({name: list(values) for name, values in (columns or {}).items()})
        if len(frame.columns) and len(frame) != self.n:
            raise ValueError(f"columns have {len(frame)} rows, the assignment has {self.n}")
        frame["cluster"] = self.ids
        write_table(frame, path)
        json_path = path.with_suffix(".json")
        write_json(json_path, self.to_json())
        return json_path

    def to_json(self) -> dict[str, Any]:
        """The JSON object :meth:`save` writes beside the CSV."""
        return {
            "n": self.n,
            "n_clusters": self.n_clusters,
            "provenance": self.provenance,
            "keys": list(self.keys) if self.keys is not None else None,
        }

    @staticmethod
    def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
        """The JSON :meth:`save` wrote beside the CSV at ``path`` (provenance, keys, ...); ``{}`` if absent."""
        meta_path = Path(path).with_suffix(".json")
        return json.loads(meta_path.read_text()) if meta_path.exists() else {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClusterAssignment:
        """Read what :meth:`save` wrote (the table's ``cluster`` column and the JSON beside it)."""
        from clinfonce.data.tables import read_table

        path = Path(path)
        frame = read_table(path)
        if "cluster" not in frame.columns:
            raise ValueError(f"{path}: no 'cluster' column")
        meta = cls.load_metadata(path)
        keys = meta.get("keys")
        return cls(
            ids=frame["cluster"].to_numpy(np.int64),
            provenance=meta.get("provenance", {}),
            keys=tuple(keys) if keys is not None else None,
        )


def _regular_rows(singleton_rows: np.ndarray | None, n: int) -> np.ndarray:
    """``bool [n]``: rows that are not singletons."""
    if singleton_rows is None:
        return np.ones(n, dtype=bool)
    singleton_rows = np.asarray(singleton_rows, dtype=bool)
    if singleton_rows.shape != (n,):
        raise ValueError(f"singleton_rows has shape {singleton_rows.shape}, expected ({n},)")
    return ~singleton_rows
