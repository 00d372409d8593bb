"""The error type for mistakes in what a user gave us (files, tables, columns, values, options).

The CLI turns an :class:`InputError` into one clear line and exit status 2; anything else is a bug and
keeps its traceback. It subclasses ``ValueError`` so library users can catch either.
"""


class InputError(ValueError):
    """Bad user input; the message names the file, row, column or option at fault."""
