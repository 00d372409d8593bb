"""What the library prints: nothing by default from Python, progress lines on request.

The command line always shows progress (:func:`show_progress`) and keeps Lightning to its own bar
(:func:`quiet_lightning`); the Python API (:mod:`clinfonce.api`) is silent unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator

#: Lightning messages that say nothing a clinfonce user can act on.
_NOISE = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    # a resumed run writes into its own checkpoint and log folders on purpose
    ".*exists and is not empty.*",
    # mid-epoch resumes are exact: the engine makes the sampler skip what the checkpoint had trained
    ".*your dataloader is not resumable.*",
)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the current ``sys.stderr`` at each line (not the one when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _from_rank_zero(record: logging.LogRecord) -> bool:
    """Progress lines of global rank 0 only, so a multi-process run prints each once; warnings and errors
    of every process (the rank is the one Lightning knows; 0 while Lightning is not loaded)."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", 0) if rank_zero else 0
    return rank == 0 or record.levelno >= logging.WARNING


def show_progress() -> None:
    """Show the library's progress lines (stage 1, image checks, epochs, evaluation) on stderr."""
    logger = logging.getLogger("clinfonce")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_from_rank_zero)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def quiet_lightning() -> None:
    """Keep Lightning to its progress bar: its tips and hints go to its log at WARNING, its noise is
    filtered, for the rest of the process (the command line)."""
    import lightning.pytorch  # noqa: F401 -- importing it sets its logger's level: set ours after

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def library_output(verbose: bool) -> Iterator[None]:
    """Inside the block: progress lines on stderr when ``verbose``; otherwise no clinfonce or Lightning
    message and no warning below an error. Everything is restored afterwards."""
    import lightning.pytorch  # noqa: F401 -- see quiet_lightning

    ours, theirs = logging.getLogger("clinfonce"), logging.getLogger("lightning.pytorch")
    saved = (ours.level, theirs.level, list(ours.handlers))
    try:
        with warnings.catch_warnings():
            if verbose:
                show_progress()
                for pattern in _NOISE:
                    warnings.filterwarnings("ignore", message=pattern)
                theirs.setLevel(logging.WARNING)
            else:
                warnings.simplefilter("ignore")
                ours.setLevel(logging.WARNING)
                theirs.setLevel(logging.ERROR)
            yield
    finally:
        ours.setLevel(saved[0])
        theirs.setLevel(saved[1])
        ours.handlers[:] = saved[2]
