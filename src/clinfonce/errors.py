"""The error type for mistakes in what a user gave us (files, tables, columns, values, options).

The CLI turns an :class:`InputError` into one clear line and exit status 2; anything else is a bug and
keeps its traceback. It subclasses ``ValueError`` so library users can catch either.
"""


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
