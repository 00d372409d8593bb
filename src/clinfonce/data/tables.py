"""Reading metadata tables (CSV, TSV, Parquet) with errors that name the file and the column."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clinfonce.errors import InputError

_READERS = {".csv": ",", ".tsv": "\t", ".txt": None}


def read_table(path: str | os.PathLike, tag_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a metadata table: ``.csv``, ``.tsv``, ``.txt`` (whitespace separated) or ``.parquet``.

    Args:
        path: the table file.
        tag_columns: columns holding tag lists. A delimited file cannot tell an unknown tag list from an
            empty one, so there an empty cell of a tag column reads as ``""`` (no tags), not as a missing
            value; in Parquet a null stays missing.

    Raises:
        InputError: the file is missing, not a regular file, of an unknown type, empty or malformed.
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
            separator = _READERS[suffix]
            table = pd.read_csv(path, sep=separator) if separator else pd.read_csv(path, sep=r"\s+")
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
        raise InputError(f"{path}: the table has no rows")
    return table


def require_columns(table: pd.DataFrame, columns: Sequence[str], source: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``source`` if any of ``columns`` is absent from ``table``."""
    unknown = [name for name in columns if name not in table.columns]
    if unknown:
        raise InputError(
            f"{source}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the table has: {', '.join(map(str, table.columns))}"
        )


#: Table types :func:`write_table` writes, by file extension.
WRITABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` in the format its extension names (CSV, TSV or Parquet), atomically, readable by
    :func:`read_table`; any other extension is an :class:`InputError`."""
    from clinfonce._io import atomic_write_with

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise InputError(
            f"{path}: cannot write a {suffix or 'extension-less'} table; use .csv, .tsv or .parquet"
        )
    if suffix in (".parquet", ".pq"):
        atomic_write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        atomic_write_with(path, lambda tmp: frame.to_csv(tmp, sep=sep, index=False))
