"""Command-line flags from typed settings: one flag per field of a settings dataclass, parsed by the field's
type, helped by its ``help`` metadata and restricted to its ``choices``, so a flag never restates what its
field says. Light on imports: ``clinfonce --help`` builds every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_UnionType = type(int | None)


def add_flags(
    group: Any, cls: type, *, skip: Sequence[str] = (), flags: Mapping[str, str] | None = None
) -> None:
    """One command-line flag per field of the settings dataclass ``cls`` (``top_k`` -> ``--top-k``, or the
    name ``flags`` gives): parsed by the field's type (lists comma-separated, mappings ``K=V1,V2;K2=V3``,
    booleans ``--x/--no-x``), helped by its ``help`` metadata (and default), restricted to its ``choices``.
    Every flag's default is None (unset: the field keeps its default); fields without help, in ``skip``, or
    marked ``training_only`` get none. Returns the fields that got a flag (for :func:`given_fields`)."""
    hints, flags, defaults = typing.get_type_hints(cls), flags or {}, cls()
    made = []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("training_only") or "help" not in f.metadata:
            continue
        kind, default = hints[f.name], getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        shown = f.metadata.get("unset", shown)  # what leaving the flag out means, when not its default
        text = f.metadata["help"] + (f" (default {shown})" if default not in (None, [], {}) else "")
        options: dict[str, Any] = {"default": None, "dest": f.name, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif f.metadata.get("choices"):
            options["choices"] = f.metadata["choices"]
        else:
            options["type"], options["metavar"] = _flag_parser(kind)
        group.add_argument(flags.get(f.name, "--" + f.name.replace("_", "-")), **options)
        made.append(f.name)
    return made


def given_fields(namespace: argparse.Namespace, fields: Sequence[str]) -> dict[str, Any]:
    """The values of ``fields`` (flags of :func:`add_flags`) given on the command line."""
    return {name: getattr(namespace, name) for name in fields if getattr(namespace, name, None) is not None}


def _flag_parser(kind: Any) -> tuple[Callable[[str], Any], str | None]:
    """How a flag's text becomes a field of type ``kind``, and the flag's metavar."""
    if kind in (int, int | None):
        return parse_int, "N"
    if is_container(kind, dict):
        return key_values, "KEY=VALUES"
    if is_container(kind, list):
        return (int_list, "N[,N...]") if list[int] in (kind, *typing.get_args(kind)) else (names, "A[,B...]")
    return str, None


def names(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]`` (an argparse type: at least one name)."""
    found = [name.strip() for name in text.split(",") if name.strip()]
    if not found:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return found


def int_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (an argparse type)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_int(text: str) -> int:
    """An integer (an argparse type)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (an argparse type)."""
    value = parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def key_values(text: str) -> dict[str, Any]:
    """``K=V1,V2;K2=V3`` -> ``{"K": [V1, V2], "K2": V3}`` (an argparse type; values as YAML, ``:`` separates
    list items too, as in bin edges ``size=30:40:50``)."""
    import yaml

    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, _, spec = item.partition("=")
        parts = [part for part in re.split(r"[,:]", spec) if part.strip()]
        if not key.strip() or not parts:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE[,VALUE...], got {item!r}")
        try:
            parsed = [yaml.safe_load(part) for part in parts]
        except yaml.YAMLError:
            raise argparse.ArgumentTypeError(f"cannot read the values of {item!r}") from None
        values[key.strip()] = parsed if re.search(r"[,:]", spec) else parsed[0]
    return values


def is_container(hint: Any, container: type) -> bool:
    """Whether the type ``hint`` (or one member of a union) is ``container[...]``."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    return any(typing.get_origin(option) is container or option is container for option in options)
