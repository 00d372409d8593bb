"""Reading metadata tables (CSV, TSV, Parquet) with errors that name the file, the line and the column.

How a delimited table (``.csv``, ``.tsv``, ``.txt``) is read:

- text encoding: UTF-8, with or without a byte-order mark (the mark is dropped, so the first column keeps
  its name); UTF-16 when the file starts with a UTF-16 byte-order mark (Excel's "Unicode text"); any other
  encoding must be named (``encoding``, e.g. ``latin-1``); a file that is not valid UTF-8 is an error naming
  the line and the byte, never guessed;
- delimiter: ``.tsv`` tab, ``.txt`` whitespace; a ``.csv`` is split by whichever of ``,`` ``;`` tab ``|``
  splits its header line (the first non-blank line) into the most columns, ``,`` on a tie (so Excel's
  semicolon files of many locales read as they should);
- header: column names are stripped of surrounding whitespace; a name given twice is an error naming both
  columns (pandas would silently rename the second ``name.1``);
- an empty file, or a header without rows, is an error.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clinfonce.errors import InputError

_READERS = {".csv": ",", ".tsv": "\t", ".txt": None}
#: Delimiters a ``.csv`` may use, in order of preference on a tie.
CSV_DELIMITERS = (",", ";", "\t", "|")


def read_table(
    path: str | os.PathLike, tag_columns: Sequence[str] = (), encoding: str | None = None
) -> pd.DataFrame:
    """Read a metadata table: ``.csv``, ``.tsv``, ``.txt`` (whitespace separated) or ``.parquet``.

    Args:
        path: the table file.
        tag_columns: columns holding tag lists. A delimited file cannot tell an unknown tag list from an
            empty one, so there an empty cell of a tag column reads as ``""`` (no tags), not as a missing
            value; in Parquet a null stays missing.
        encoding: the text encoding of a delimited file (``None``: UTF-8, or UTF-16 with a byte-order mark;
            rules in the module docstring).

    Raises:
        InputError: the file is missing, not a regular file, of an unknown type, empty, not in its encoding,
            malformed, has a column name twice, or has no rows.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        elif suffix in _READERS:
            table = _read_delimited(path, suffix, encoding)
            for name in tag_columns:
                if name in table.columns:
                    table[name] = table[name].fillna("")
        else:
            raise InputError(f"{path}: unknown table type {suffix!r}; use .csv, .tsv, .txt or .parquet")
    except InputError:
        raise
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        ValueError,
    ) as error:
        raise InputError(f"{path}: cannot read the table: {str(error).strip().splitlines()[0]}") from error
    if table.empty:
        columns = ", ".join(map(str, table.columns))
        raise InputError(
            f"{path}: the table has no rows" + (f" (only the header: {columns})" if columns else "")
        )
    return table


def _read_delimited(path: Path, suffix: str, encoding: str | None) -> pd.DataFrame:
    """A ``.csv`` / ``.tsv`` / ``.txt`` table by the rules of the module docstring."""
    text = _decode(path, encoding)
    header = next((line for line in text.splitlines() if line.strip()), None)
    if header is None:
        raise InputError(f"{path}: empty file (no header line)")
    separator = _READERS[suffix]
    if suffix == ".csv":
        separator = sniff_delimiter(header)
    names = header.split() if separator is None else next(csv.reader([header], delimiter=separator))
    names = [name.strip() for name in names]
    first: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name and first.setdefault(name, number) != number:
            raise InputError(
                f"{path}: column {name!r} appears twice in the header (columns {first[name]} and {number}); "
                "give every column its own name"
            )
    table = pd.read_csv(io.StringIO(text), sep=separator if separator else r"\s+")
    table.columns = [name.strip() if isinstance(name, str) else name for name in table.columns]
    return table


def sniff_delimiter(header: str) -> str:
    """The one of :data:`CSV_DELIMITERS` that splits ``header`` into the most fields (``,`` on a tie)."""
    best, fields = CSV_DELIMITERS[0], 1
    for delimiter in CSV_DELIMITERS:
        count = len(next(csv.reader([header], delimiter=delimiter)))
        if count > fields:
            best, fields = delimiter, count
    return best


def _decode(path: Path, encoding: str | None) -> str:
    """The text of ``path`` (encoding rules in the module docstring)."""
    data = path.read_bytes()
    if encoding is None:
        utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        codec, named = ("utf-16" if utf16 else "utf-8-sig"), False
    else:
        check_encoding(encoding)
        codec, named = encoding, True
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        byte = data[error.start : error.start + 1].hex()
        if named:
            raise InputError(f"{path}: line {line} is not {encoding} (byte 0x{byte})") from None
        raise InputError(
            f"{path}: line {line} is not UTF-8 (byte 0x{byte}); save the table as UTF-8, or name its encoding "
            "(the table dataset's encoding option, e.g. --data-option encoding=latin-1)"
        ) from None
    return text.removeprefix("\ufeff")


def check_encoding(encoding: str) -> None:
    """:class:`InputError` unless Python knows the text encoding ``encoding``."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None


def require_columns(table: pd.DataFrame, columns: Sequence[str], source: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``source`` if any of ``columns`` is absent from ``table``."""
    unknown = [name for name in columns if name not in table.columns]
    if unknown:
        have = [str(name) for name in table.columns]
        close = {name: difflib.get_close_matches(str(name), have, n=1) for name in unknown}
        hints = [f"{close[name][0]!r} for {name!r}" for name in unknown if close[name]]
        hint = f" (did you mean {', '.join(hints)}?)" if len(unknown) > 1 and hints else ""
        if len(unknown) == 1 and hints:
            hint = f" (did you mean {close[unknown[0]][0]!r}?)"
        raise InputError(
            f"{source}: unknown column(s) {', '.join(map(repr, unknown))}{hint}; the table has: {', '.join(have)}"
        )


#: Table types :func:`write_table` writes, by file extension.
WRITABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def check_writable(path: str | os.PathLike) -> str:
    """The table type (lower-case extension) :func:`write_table` would write at ``path``; an
    :class:`InputError` for an extension it does not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise InputError(
            f"{path}: cannot write a {suffix or 'extension-less'} table; use .csv, .tsv or .parquet"
        )
    return suffix


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` in the format its extension names (CSV, TSV or Parquet), atomically, readable by
    :func:`read_table`; any other extension is an :class:`InputError`."""
    from clinfonce._io import atomic_write_with

    path = Path(path)
    suffix = check_writable(path)
    if suffix in (".parquet", ".pq"):
        atomic_write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        atomic_write_with(path, lambda tmp: frame.to_csv(tmp, sep=sep, index=False))
