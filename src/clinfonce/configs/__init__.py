"""The run configs shipped inside the package, one per dataset (``--config NAME``): their names and text,
read without importing the config machinery."""

from __future__ import annotations

from importlib import resources


def names() -> list[str]:
    """Names of the bundled configs, sorted."""
    folder = resources.files(__name__)
    return sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml"))


def text(name: str) -> str | None:
    """The YAML text of bundled config ``name``, or None when there is none."""
    item = resources.files(__name__) / f"{name}.yaml"
    return item.read_text(encoding="utf-8") if item.is_file() else None
