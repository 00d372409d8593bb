"""The fields of a comparison (:class:`CompareSpec`): a plain dataclass, light to import, since the
command line builds its ``compare`` flags from these fields (:mod:`clinfonce.compare.spec` plans the runs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompareSpec:
    """A comparison (fields as in the module docstring)."""

    config: str | None = field(default=None, metadata={"help": "base run config: bundled name or path"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "dotted key -> value"})
    methods: list[str] = field(
        default_factory=lambda: ["simclr", "clinfonce", "supcon"],
        metadata={"help": "the training methods to compare (clinfonce.methods)"},
    )
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "training seeds"})
    settings: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "name -> clusters-section keys of that setting"}
    )
    sweep: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "one clusters key -> its values, e.g. top_k=1,3,5"}
    )
    out: str = field(default="compare_out", metadata={"help": "output folder"})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what ``OUT/compare.yaml`` holds)."""
        return dataclasses.asdict(self)
