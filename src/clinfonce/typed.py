"""Typed settings from plain mappings: the one validation path of configs and dataset options.

A settings class is a dataclass whose fields have OmegaConf-compatible types (``int``, ``float``, ``str``,
``bool``, their ``| None``, ``list[...]``, ``dict[str, ...]``, nested dataclasses); a field without a default is
required. :func:`from_mapping` merges user values into the class's defaults with OmegaConf, so values are
converted and checked against the declared types (``"1e-3"`` becomes ``0.001`` for a float), unknown keys
get a "did you mean", and every failure is an :class:`~clinfonce.errors.InputError` that names the key as
the user typed it. Lists have one syntax everywhere: a YAML list (``[a, b]``) or a comma-separated string
(``a,b``).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from clinfonce.errors import InputError
from clinfonce.flags import is_container as _is

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str, prefix: str = "") -> T:
    """An instance of dataclass ``cls`` from ``values`` (missing keys take their defaults).

    Args:
        cls: the settings dataclass.
        values: nested mapping of user values (from YAML, ``key=value`` arguments or code).
        where: what the values are, for messages: ``"config"``, ``"dataset 'cub200'"``.
        prefix: the dotted path of ``values`` inside what the user wrote (``"data.options."``).

    Raises:
        InputError: an unknown key, a value of the wrong type, or a required key left out.
    """
    values = _split_lists(cls, dict(values or {}), where, prefix)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigKeyError as error:
        raise InputError(_unknown_key(cls, str(error.full_key), where, prefix)) from None
    except MissingMandatoryValue as error:
        raise InputError(f"{where}: {prefix}{error.full_key} is required") from None
    except ValidationError as error:
        raise InputError(f"{where}: {prefix}{error.full_key}: {_first_line(error)}") from None
    except OmegaConfBaseException as error:  # e.g. a mapping given where a list belongs
        key = getattr(error, "full_key", None) or ", ".join(values)
        raise InputError(f"{where}: {prefix}{key}: {_first_line(error)}") from None


def to_mapping(settings: Any) -> dict[str, Any]:
    """Plain nested dicts and lists (YAML-ready) of a settings dataclass instance."""
    return dataclasses.asdict(settings)


def fields_of(cls: type) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, help)`` of every field of a settings dataclass; the default is
    :data:`dataclasses.MISSING` for a required field, ``help`` the field's ``metadata["help"]``."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        rows.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def _split_lists(cls: type, values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """``values`` with comma-separated strings split where ``cls`` declares a list; recurses into sections."""
    if not dataclasses.is_dataclass(cls):
        return values
    hints = typing.get_type_hints(cls)
    for name, value in list(values.items()):
        hint = hints.get(name)
        if hint is None:
            continue
        if dataclasses.is_dataclass(hint):
            if value is None:
                values[name] = {}
            elif isinstance(value, Mapping):
                values[name] = _split_lists(hint, dict(value), where, f"{prefix}{name}.")
            else:
                raise InputError(f"{where}: {prefix}{name} is a section, got {value!r}")
        elif _is(hint, list) and isinstance(value, str):
            values[name] = [item.strip() for item in value.split(",") if item.strip()]
        elif _is(hint, list) and isinstance(value, Mapping):
            raise InputError(f"{where}: {prefix}{name} must be a list, got {value!r}")
        elif _is(hint, dict) and value is not None and not isinstance(value, Mapping):
            raise InputError(f"{where}: {prefix}{name} must be a mapping, got {value!r}")
    return values


def _unknown_key(cls: type, full_key: str, where: str, prefix: str) -> str:
    *sections, key = full_key.split(".")
    owner: Any = cls
    for section in sections:
        owner = typing.get_type_hints(owner).get(section, owner)
    names = [f.name for f in dataclasses.fields(owner)] if dataclasses.is_dataclass(owner) else []
    close = difflib.get_close_matches(key, names, n=1)
    path = ".".join([*sections, ""]) if sections else ""
    hint = f" (did you mean '{prefix}{path}{close[0]}'?)" if close else f"; known: {', '.join(names)}"
    return f"{where}: unknown key '{prefix}{full_key}'{hint}"


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()[0].strip() if str(error).strip() else type(error).__name__
    return text
