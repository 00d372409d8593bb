"""The error type for mistakes in what a user gave us (files, tables, columns, values, options).

The CLI turns an :class:`InputError` (and the other failures :func:`user_failure` knows) into one clear
line and an exit status; anything else is a bug and keeps its traceback. It subclasses ``ValueError`` so
library users can catch either.
"""

from __future__ import annotations

import errno

#: Import names of the ``train`` extra (pyproject.toml): a loss-only install lacks them.
TRAIN_EXTRA = (
    "torchvision",
    "lightning",
    "tensorboard",
    "matplotlib",
    "PIL",
    "omegaconf",
    "pyarrow",
    "tabulate",
)
#: Storage failures a user must fix (space, quota, file size limit, read-only file system).
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


class InputError(ValueError):
    """Bad user input; the message names the file, row, column or option at fault."""


class RunStopped(RuntimeError):
    """Training stopped before its end for a reason the user must act on (interrupted, or the numbers went
    non-finite); the message is one line saying what happened and what to do next.

    Attributes:
        exit_status: what the command line exits with (130 for an interrupt, 1 otherwise).
    """

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def user_failure(error: BaseException) -> tuple[str, int] | None:
    """``(one line, exit status)`` for a failure the user must act on, or None for a bug (whose traceback
    is kept): bad input (2), a missing extra (2), a full disk or a read-only file system (2: the file
    being written is left out, never torn), a stopped run (its status), an interrupt (130)."""
    if isinstance(error, ModuleNotFoundError):
        if (error.name or "").split(".")[0] not in TRAIN_EXTRA:
            return None
        return (
            f"error: this command needs the training extra ({error.name} is not installed): pip install 'clinfonce[train]'",
            2,
        )
    if isinstance(
        error, (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
    ):
        return f"error: {one_line(error)}", 2
    if isinstance(error, OSError):
        return (f"error: {one_line(error)}", 2) if error.errno in STORAGE_ERRORS else None
    if isinstance(error, RunStopped):
        return one_line(error), error.exit_status
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type's name when it has none)."""
    return " ".join((str(error).strip() or type(error).__name__).split())
