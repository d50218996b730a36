"""Normalisation of disease names for matching: case-, punctuation- and plural-insensitive keys."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# words whose final "s" is not a plural marker
_KEEP_S = ("ss", "us", "is")


@lru_cache(maxsize=200_000)
def singular(word: str) -> str:
    """Lower-case singular form by simple English rules (``carcinomas`` -> ``carcinoma``, ``ovaries`` -> ``ovary``).

    The same rule runs on both sides of every comparison, so an imperfect singular still matches consistently.
    """
    word = word.lower()
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_KEEP_S):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1]


def words(text: str) -> list[tuple[str, int, int]]:
    """Word tokens of ``text`` with their character spans."""
    return [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]


def normalise(text: str) -> str:
    """Matching key: lower-case singular words joined by single spaces (punctuation dropped)."""
    return " ".join(singular(w) for w in _WORD.findall(text))


def is_acronym(text: str) -> bool:
    """True for short all-capital labels (``AML``, ``CCRCC``) that must match case-sensitively."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and len(text) <= 8 and " " not in text and all(c.isupper() for c in letters)
