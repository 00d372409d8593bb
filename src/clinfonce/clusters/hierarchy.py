"""Stage 1 from a class hierarchy: each class is clustered with the others under its ancestor at one level.

The hierarchy is given as a ``parents`` map from a class name to its parent(s): a single name, a sequence of
names (several parents: the hierarchy is a DAG, as WordNet is), or ``None`` / an empty sequence for a root.
A name that only appears as a parent value (never as a key) is a root as well. The root is depth 0; a path
is written root first and ends at the class itself.

Path rules, for a class with several root paths (``path_rule``):

- ``"first"`` (default): follow the **first-listed parent** at every step. For WordNet this is the order of
  the hypernym pointers in ``data.noun``, which puts dog.n.01 under canine -> carnivore -> mammal rather
  than under domestic_animal, i.e. the taxonomic path the paper's levels are counted on.
- ``"shortest"``: the **shortest** path; ties are broken by the lexicographically smallest sequence of node
  names, root first. It does not depend on the order of the map or of the parent lists.

Both rules are deterministic and prefix-consistent: the chosen path of a class, cut at any node on it, is
that node's own chosen path. Hence two classes sharing an ancestor at depth ``L + 1`` share the one at
depth ``L`` too, and the clusters of level ``L + 1`` always refine those of level ``L``. Classes with
several paths, and those whose ancestor at the level would differ under another path, are reported.

A class whose chosen path is not deeper than the level stays its own cluster. Samples whose label is
missing (``None`` / NaN) each get a singleton cluster of their own; they are counted in the provenance.

Cluster keys are the ancestor names. When the names are ids (WordNet's ``n02084071``), ``names`` gives a
readable name to write next to each, e.g. ``n02084071 (dog)`` with ``names=WordNet().name``; cluster ids
stay ordered by the ancestor id, so they do not depend on whether names are given.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from clinfonce.clusters.assignment import ClusterAssignment
from clinfonce.errors import InputError

Parents = Mapping[str, Sequence[str] | str | None]

PATH_RULES = {
    "first": "first-listed parent at every step",
    "shortest": "shortest root path, ties by lexicographically smallest node sequence",
}


def root_paths(node: str, parents: Parents) -> list[tuple[str, ...]]:
    """Every path from a root down to ``node``.

    Args:
        node: a class name; a key of ``parents`` or a parent value in it.
        parents: class name -> parent name, parent names, or ``None`` for a root.

    Returns:
        The paths as tuples of names, root first, ``node`` last, in the order of the parent lists
        (depth first). A root gives ``[(node,)]``.

    Raises:
        ValueError: ``node`` does not occur in ``parents``, or a cycle is reachable from ``node``.
    """
    graph = _graph(parents)
    if node not in graph:
        raise InputError(f"class {node!r} is neither a key nor a parent in the hierarchy")
    return _root_paths(node, graph, {}, {})


def choose_path(paths: Sequence[tuple[str, ...]], rule: str = "first") -> tuple[str, ...]:
    """The path a rule picks from the root paths of one class, as :func:`root_paths` orders them.

    Args:
        paths: root paths in the order :func:`root_paths` returns them (depth first, parents in listed
            order), so the first one follows the first-listed parent at every step.
        rule: ``"first"`` or ``"shortest"`` (see the module docstring).

    Raises:
        ValueError: ``paths`` is empty or the rule is unknown.
    """
    if not paths:
        raise ValueError("no path to choose from")
    if rule == "first":
        return tuple(paths[0])
    if rule == "shortest":
        return min((tuple(path) for path in paths), key=lambda path: (len(path), path))
    raise InputError(f"unknown path rule {rule!r}; choose one of {sorted(PATH_RULES)}")


def hierarchy_clusters(
    labels: Sequence[Any] | np.ndarray,
    parents: Parents,
    level: int,
    path_rule: str = "first",
    names: Callable[[str], str] | Mapping[str, str] | None = None,
) -> ClusterAssignment:
    """Cluster samples by the ancestor of their class at depth ``level`` of the hierarchy.

    Each class is replaced by the node at depth ``level`` of its chosen root path (see the module
    docstring for the rule); a class not deeper than ``level`` is its own cluster. The work is done once
    per distinct class, then mapped onto the samples.

    Args:
        labels: ``[N]`` class name per sample; ``None`` / NaN marks a missing label (singleton cluster).
        parents: class name -> parent name, parent names, or ``None`` for a root.
        level: depth of the ancestor that names the cluster (the root is depth 0); an int ``>= 0``.
        path_rule: which root path a class with several uses: ``"first"`` or ``"shortest"``.
        names: optional node -> readable name (a function such as :meth:`WordNet.name
            <clinfonce.clusters.wordnet.WordNet.name>`, or a mapping; nodes a mapping lacks keep their bare
            key); the key of a cluster is then ``"node (name)"``. Ids do not change.

    Returns:
        The assignment; its keys are the ancestor names (with ``names``: ``"n02084071 (dog)"``). The provenance holds ``method``, ``level``,
        ``path_rule``, ``n_classes``, ``n_missing``, ``classes_shallower_than_level`` (depth strictly
        below ``level``; they keep their own cluster) with its count, ``multi_path_classes`` (one record per
        class with several root paths: the class, its number of paths, the chosen path and the ancestor at
        this level) and ``ambiguous_at_level`` (those multi-path classes for which another path would give
        a different ancestor at this level) with their counts.

    Raises:
        ValueError: ``level`` is not a non-negative int; a label occurs nowhere in ``parents``; the
            hierarchy has a cycle above a label.
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
        raise InputError(f"level must be an int >= 0, got {level!r}")
    level = int(level)
    if path_rule not in PATH_RULES:
        raise InputError(f"unknown path rule {path_rule!r}; choose one of {sorted(PATH_RULES)}")
    values = np.asarray(labels, dtype=object)
    if values.ndim != 1:
        raise InputError(f"labels must be one-dimensional, got shape {values.shape}")
    missing = np.asarray(pd.isna(values), dtype=bool)
    codes, classes = pd.factorize(values[~missing], sort=True)

    graph = _graph(parents)
    memo: dict[str, list[tuple[str, ...]]] = {}
    ancestors: list[str] = []
    shallower: list[str] = []
    multi_path: list[dict[str, Any]] = []
    ambiguous: list[str] = []
    for name in classes:
        if name not in graph:
            raise InputError(f"class {name!r} is neither a key nor a parent in the hierarchy")
        paths = _root_paths(name, graph, memo, {})
        chosen = choose_path(paths, path_rule)
        ancestor = _ancestor(chosen, level)
        ancestors.append(ancestor)
        if len(chosen) - 1 < level:
            shallower.append(name)
        if len(paths) > 1:
            multi_path.append(
                {"class": name, "n_paths": len(paths), "chosen_path": list(chosen), "ancestor": ancestor}
            )
            if any(_ancestor(path, level) != ancestor for path in paths):
                ambiguous.append(name)

    tokens = np.full(len(values), "", dtype=np.array([*ancestors, ""], dtype=str).dtype)
    tokens[~missing] = np.array(ancestors, dtype=tokens.dtype)[codes]
    provenance = {
        "method": "hierarchy",
        "level": level,
        "path_rule": f"{path_rule}: {PATH_RULES[path_rule]}",
        "n_classes": len(classes),
        "n_missing": int(missing.sum()),
        "n_classes_shallower_than_level": len(shallower),
        "classes_shallower_than_level": shallower,
        "n_multi_path_classes": len(multi_path),
        "multi_path_classes": multi_path,
        "n_ambiguous_at_level": len(ambiguous),
        "ambiguous_at_level": ambiguous,
    }
    assignment = ClusterAssignment.from_tokens(tokens, provenance, singleton_rows=missing)
    if names is None:
        return assignment
    n_regular = assignment.n_clusters - int(missing.sum())
    keys = [_named(key, names) for key in assignment.keys[:n_regular]]
    return dataclasses.replace(assignment, keys=(*keys, *assignment.keys[n_regular:]))


def _named(node: str, names: Callable[[str], str] | Mapping[str, str]) -> str:
    """``"node (name)"``, or ``node`` when there is no name for it."""
    name = names.get(node) if isinstance(names, Mapping) else names(node)
    return f"{node} ({name})" if name and name != node else node


def _ancestor(path: tuple[str, ...], level: int) -> str:
    """The node at depth ``level`` of ``path``, or its last node when the path is not that deep."""
    return path[min(level, len(path) - 1)]


def _graph(parents: Parents) -> dict[str, tuple[str, ...]]:
    """Normalise ``parents`` to name -> tuple of distinct parents; parent-only names become roots."""
    graph: dict[str, tuple[str, ...]] = {}
    for name, value in parents.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            graph[name] = ()
        elif isinstance(value, str):
            graph[name] = (value,)
        else:
            graph[name] = tuple(dict.fromkeys(value))
    for value in list(graph.values()):
        for parent in value:
            graph.setdefault(parent, ())
    return graph


def _root_paths(
    node: str,
    graph: Mapping[str, tuple[str, ...]],
    memo: dict[str, list[tuple[str, ...]]],
    stack: dict[str, None],
) -> list[tuple[str, ...]]:
    """All root paths of ``node`` (depth first, memoised); ``stack`` holds the nodes being expanded."""
    if node in memo:
        return memo[node]
    if node in stack:
        cycle = [*list(stack)[list(stack).index(node) :], node]
        raise InputError(
            f"the class hierarchy has a cycle through {node!r} (child -> parent): {' -> '.join(cycle)}"
        )
    stack[node] = None
    if graph[node]:
        paths = [(*path, node) for parent in graph[node] for path in _root_paths(parent, graph, memo, stack)]
    else:
        paths = [(node,)]
    del stack[node]
    memo[node] = paths
    return paths
