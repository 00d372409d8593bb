"""``clinfonce compare``: methods x seeds x cluster settings, every run evaluated by the same probe."""

from clinfonce.compare.runner import RESULT_COLUMNS, run_compare
from clinfonce.compare.spec import CompareSpec, PlannedRun, load_spec, plan

__all__ = ["RESULT_COLUMNS", "CompareSpec", "PlannedRun", "load_spec", "plan", "run_compare"]
