"""A small reader of the noun hierarchy of a local WordNet 3.0 database (no download, no nltk).

ImageNet class ids ("wnids") are ``n`` followed by the 8-digit offset of a noun synset in ``data.noun``,
e.g. ``n02084071`` is dog.n.01. Every synset line of ``data.noun`` starts with its own byte offset, so a
synset is read by seeking to that offset. The line format (WordNet's ``wndb(5)``) is::

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss

with ``w_cnt`` a 2-digit hexadecimal count of words, ``p_cnt`` a 3-digit decimal count of pointers, and each
pointer ``pointer_symbol synset_offset pos source/target``. Hypernym (``@``) and instance hypernym
(``@i``) pointers are the parents. Lines starting with two spaces are the licence header.

The database directory is the ``directory`` argument, else the environment variable
``CLINFONCE_WORDNET_DIR``, else ``/usr/share/wordnet`` (Debian's ``wordnet-base`` package).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from clinfonce.errors import InputError

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_DIR_ENV = "CLINFONCE_WORDNET_DIR"
PARENT_POINTERS = frozenset({"@", "@i"})

_WNID = re.compile(r"n(\d{8})")


class Synset(NamedTuple):
    """One noun synset: its wnid, its words (lemmas, underscores kept, as in the file) and parent wnids."""

    wnid: str
    lemmas: tuple[str, ...]
    parents: tuple[str, ...]


class WordNet:
    """Noun synsets of a WordNet 3.0 database directory, read on demand and cached.

    Args:
        directory: the directory holding ``data.noun``; ``None`` uses ``$CLINFONCE_WORDNET_DIR`` or
            ``/usr/share/wordnet``.

    Raises:
        FileNotFoundError: the directory has no ``data.noun``.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        if directory is None:
            directory = os.environ.get(WORDNET_DIR_ENV) or DEFAULT_WORDNET_DIR
        self.directory = Path(directory)
        self.data_path = self.directory / "data.noun"
        if not self.data_path.is_file():
            raise FileNotFoundError(
                f"no WordNet 3.0 noun database at {self.data_path}: install it (`apt-get install "
                f"wordnet-base`, which provides /usr/share/wordnet) or set {WORDNET_DIR_ENV} to a directory "
                "holding data.noun"
            )
        self._cache: dict[str, Synset] = {}

    def synset(self, wnid: str) -> Synset:
        """The synset of ``wnid`` (``n`` + 8-digit offset in ``data.noun``).

        Raises:
            ValueError: ``wnid`` is malformed, its offset does not start a synset line of ``data.noun``, or
                that line cannot be parsed.
        """
        cached = self._cache.get(wnid)
        if cached is None:
            cached = self._cache[wnid] = self._read(wnid)
        return cached

    def parents(self, wnid: str) -> list[str]:
        """Hypernym and instance-hypernym wnids of ``wnid``, in file order (empty for the root)."""
        return list(self.synset(wnid).parents)

    def name(self, wnid: str) -> str:
        """The first lemma of ``wnid`` as written in the file, e.g. ``"dog"`` or ``"physical_entity"``."""
        return self.synset(wnid).lemmas[0]

    def parent_map(self, wnids: Iterable[str]) -> dict[str, list[str]]:
        """wnid -> parent wnids for ``wnids`` and all their ancestors (roots map to ``[]``).

        The result can be passed as ``parents`` to :func:`clinfonce.clusters.hierarchy.hierarchy_clusters`.
        """
        result: dict[str, list[str]] = {}
        pending = deque(wnids)
        while pending:
            wnid = pending.popleft()
            if wnid not in result:
                result[wnid] = self.parents(wnid)
                pending.extend(result[wnid])
        return result

    def _read(self, wnid: str) -> Synset:
        match = _WNID.fullmatch(wnid) if isinstance(wnid, str) else None
        if match is None:
            raise InputError(f"malformed wnid {wnid!r}: expected 'n' followed by 8 digits, e.g. 'n02084071'")
        offset = int(match.group(1))
        with self.data_path.open("rb") as file:
            if offset > 0:
                file.seek(offset - 1)
                starts_line = file.read(1) == b"\n"
            else:
                starts_line = False  # offset 0 is the licence header
            line = file.readline() if starts_line else b""
        if not line.startswith(match.group(1).encode() + b" "):
            raise InputError(
                f"wnid {wnid!r}: offset {offset} does not start a synset line of {self.data_path}"
            )
        try:
            return _parse(wnid, line.decode("utf-8"))
        except (IndexError, ValueError) as error:
            raise InputError(f"wnid {wnid!r}: malformed line in {self.data_path}: {error}") from error


def _parse(wnid: str, line: str) -> Synset:
    """Parse one ``data.noun`` line (its part before the gloss)."""
    fields = line.partition(" | ")[0].split()
    if fields[2] != "n":
        raise ValueError(f"synset type {fields[2]!r}, expected 'n'")
    n_words = int(fields[3], 16)
    lemmas = tuple(fields[4 : 4 + 2 * n_words : 2])
    at = 4 + 2 * n_words
    n_pointers = int(fields[at])
    pointers = fields[at + 1 : at + 1 + 4 * n_pointers]
    if len(lemmas) != n_words or n_words == 0 or len(pointers) != 4 * n_pointers:
        raise ValueError(f"{n_words} words and {n_pointers} pointers announced, fewer found")
    parents = tuple(
        f"n{pointers[i + 1]}"
        for i in range(0, len(pointers), 4)
        if pointers[i] in PARENT_POINTERS and pointers[i + 2] == "n"
    )
    return Synset(wnid=wnid, lemmas=lemmas, parents=parents)
