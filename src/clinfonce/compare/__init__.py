"""``clinfonce compare``: methods x seeds x cluster settings, every run evaluated by the same probe.

Names are imported on first use (the command line's ``--help`` imports this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfonce._lazy import lazy_exports

_EXPORTS = {
    "RESULT_COLUMNS": "clinfonce.compare.runner",
    "run_compare": "clinfonce.compare.runner",
    "CompareSpec": "clinfonce.compare.settings",
    "PlannedRun": "clinfonce.compare.spec",
    "load_spec": "clinfonce.compare.spec",
    "plan": "clinfonce.compare.spec",
    "with_shortcuts": "clinfonce.compare.spec",
}

__all__ = [
    "RESULT_COLUMNS",
    "CompareSpec",
    "PlannedRun",
    "load_spec",
    "plan",
    "run_compare",
    "with_shortcuts",
]

if TYPE_CHECKING:
    from clinfonce.compare.runner import RESULT_COLUMNS, run_compare
    from clinfonce.compare.settings import CompareSpec
    from clinfonce.compare.spec import PlannedRun, load_spec, plan, with_shortcuts

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
