"""Context of a concept mention in a report or caption: negation (NegEx-style) and grade / differentiation qualifiers.

Negation follows the NegEx scheme (Chapman et al. 2001): a pre-trigger ("no", "no evidence of", "negative for",
"without", "free of", "rule out", ...) negates the mentions that start within ``window`` words after it, a post-trigger
("is excluded", "was ruled out", "not seen", ...) those that end within ``post_window`` words before it; along a list
("no focal consolidation, suspicious opacity, large pleural effusion, or pneumothorax") the window restarts after each
negated mention. A scope stops at a sentence or clause boundary (``. ; : ? !`` or a blank line) and at a termination
term ("but", "however", "although", "except", "which", "is seen", ...). Pseudo-triggers ("no change", "no increase",
"cannot be excluded", "not ruled out", "gram negative", ...) are matched first and negate nothing, so "pneumothorax
cannot be excluded" stays positive.

Qualifiers: differentiation (well, moderately, poorly, well to moderately, moderately to poorly, un-differentiated) and
grade (low, intermediate, high; grade 1-4 or I-IV, written as 1-4) found inside the mention or next to it in the same
clause (up to 4 words before, 6 after) are kept as attributes of the mention.

The term lists are data: edit them here or pass your own :class:`ContextRules`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PRE_TRIGGERS = (
    "no", "not", "without", "no evidence of", "no evidence for", "no sign of", "no signs of", "no findings of",
    "no finding of", "negative for", "free of", "absence of", "absent", "rule out", "rules out", "ruled out",
    "denies", "denied", "no suspicion of", "not suggestive of", "not consistent with", "never had", "neither", "nor",
    "no radiographic evidence of", "no definite", "no convincing evidence of", "without evidence of", "clear of",
)
POST_TRIGGERS = (
    "is excluded", "are excluded", "was excluded", "were excluded", "has been excluded", "have been excluded",
    "is ruled out", "are ruled out", "was ruled out", "were ruled out", "has been ruled out", "have been ruled out",
    "ruled out", "excluded", "is not seen", "are not seen", "was not seen", "were not seen", "not seen",
    "is not identified", "are not identified", "not identified", "not present", "is absent", "are absent",
    "not detected", "is not detected", "was not detected", "not demonstrated", "is unlikely", "unlikely",
)
PSEUDO_TRIGGERS = (
    "no change", "no changes", "no interval change", "no significant change", "no significant interval change",
    "no definite change", "no suspicious change", "no increase", "no further", "not only", "not necessarily",
    "not certain if", "not certain whether", "without difficulty", "gram negative", "cannot be excluded",
    "can not be excluded", "cannot be ruled out", "can not be ruled out", "not excluded", "not ruled out",
    "not be excluded", "not be ruled out", "no longer", "not drain", "not extend", "not cause",
)
TERMINATIONS = (
    "but", "however", "although", "though", "except", "apart from", "aside from", "which", "who", "whereas",
    "yet", "still", "there is", "there are", "there has been", "there have been", "otherwise", "nevertheless",
    # the verb that closes "no X is seen": what follows is another statement
    "is seen", "are seen", "was seen", "were seen", "is identified", "are identified", "is noted", "are noted",
    "is present", "are present", "is demonstrated", "are demonstrated", "is visualized", "are visualized",
)
#: characters between two words that end a scope
BOUNDARY = re.compile(r"[.;:?!]|\n\s*\n")

_LEVEL = r"(well|moderately|poorly)"
_DIFFERENTIATION = re.compile(
    rf"\b{_LEVEL}(?:\s*(?:-|to|/)\s*{_LEVEL})?[\s-]+differentiated\b|\b(un)differentiated\b", re.IGNORECASE)
_GRADE = re.compile(
    r"\b(low|intermediate|high)[\s-]+grade\b|\bgrade\s+(1|2|3|4|iv|iii|ii|i)\b(?!\s*-)", re.IGNORECASE)
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4"}


@dataclass(frozen=True)
class ContextRules:
    """Trigger, pseudo-trigger and termination terms (lower case, single spaces) and the scope windows in words."""

    pre: Sequence[str] = PRE_TRIGGERS
    post: Sequence[str] = POST_TRIGGERS
    pseudo: Sequence[str] = PSEUDO_TRIGGERS
    terminations: Sequence[str] = TERMINATIONS
    window: int = 8
    post_window: int = 5
    _lookup: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def lookup(self) -> tuple[dict[tuple[str, ...], str], set[str], int]:
        """Word tuple -> kind (``pre``, ``post``, ``pseudo``, ``stop``; a term listed twice keeps the first kind), the
        first words of all terms, and the most words in a term (built once)."""
        if not self._lookup:
            table: dict[tuple[str, ...], str] = {}
            for kind, terms in (("pseudo", self.pseudo), ("stop", self.terminations), ("pre", self.pre),
                                ("post", self.post)):
                for term in terms:
                    table.setdefault(tuple(term.split()), kind)
            self._lookup.update(table=table, firsts={t[0] for t in table}, longest=max(map(len, table), default=1))
        return self._lookup["table"], self._lookup["firsts"], self._lookup["longest"]


DEFAULT_RULES = ContextRules()


@dataclass(frozen=True)
class Cue:
    """A trigger or termination found in the text: word positions [first, last] and its kind."""

    first: int
    last: int
    kind: str


def find_cues(words: Sequence[str], rules: ContextRules = DEFAULT_RULES) -> list[Cue]:
    """Triggers, pseudo-triggers and terminations, left to right, the longest term at each word (lower-cased words)."""
    table, firsts, longest = rules.lookup()
    cues = []
    i = 0
    while i < len(words):
        if words[i] in firsts:
            for size in range(min(longest, len(words) - i), 0, -1):
                kind = table.get(tuple(words[i:i + size]))
                if kind is not None:
                    cues.append(Cue(i, i + size - 1, kind))
                    i += size - 1
                    break
        i += 1
    return cues


def clause_ids(text: str, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Clause number of each word: a boundary between two words starts a new clause."""
    cuts = [m.start() for m in BOUNDARY.finditer(text)]
    return [bisect.bisect_left(cuts, start) for start, _ in spans]


def negated_mentions(words: Sequence[str], clause: Sequence[int], mentions: Sequence[tuple[int, int]],
                     rules: ContextRules = DEFAULT_RULES) -> list[bool]:
    """Whether each mention (first and last word positions, left to right) is negated.

    A pre-trigger's scope reaches ``window`` words past the trigger and, along a list ("no effusion, pneumothorax or
    consolidation"), ``window`` words past each mention it negated; a post-trigger's reaches back ``post_window`` words
    the same way. Scopes end at a clause boundary and at a termination or pseudo-trigger term.

    Args:
        words: the words, lower case.
        clause: clause number of each word (:func:`clause_ids`).
        mentions: ``(first, last)`` word positions of each mention.
        rules: the terms and windows.
    """
    cues = find_cues(words, rules)
    negated = [False] * len(mentions)
    for n, cue in enumerate(cues):
        if cue.kind == "pre":
            stop = next((c.first for c in cues[n + 1:] if c.kind in ("stop", "pseudo")), len(words))
            reach = cue.last + rules.window
            for k, (i, j) in enumerate(mentions):
                if i <= cue.last:
                    continue
                if i > reach or i >= stop or clause[i] != clause[cue.last]:
                    break
                negated[k] = True
                reach = j + rules.window
        elif cue.kind == "post":
            stop = max((c.last for c in cues[:n] if c.kind in ("stop", "pseudo")), default=-1)
            reach = cue.first - rules.post_window
            for k in range(len(mentions) - 1, -1, -1):
                i, j = mentions[k]
                if j >= cue.first:
                    continue
                if j < reach or j <= stop or clause[j] != clause[cue.first]:
                    break
                negated[k] = True
                reach = i - rules.post_window
    return negated


def qualifiers(text: str, start: int, end: int, clause_start: int, clause_end: int) -> dict[str, str]:
    """Grade and differentiation attached to the mention at ``[start, end)``: inside it, or within 4 words before /
    6 words after it, inside the clause ``[clause_start, clause_end)``."""
    before = _last_words(text[clause_start:start], 4)
    after = _first_words(text[end:clause_end], 6)
    found: dict[str, str] = {}
    for part in (text[start:end], before, after):
        for m in _DIFFERENTIATION.finditer(part):
            value = "un" if m.group(3) else m.group(1).lower() + (f" to {m.group(2).lower()}" if m.group(2) else "")
            found.setdefault("differentiation", value)
        for m in _GRADE.finditer(part):
            value = m.group(1).lower() if m.group(1) else _ROMAN.get(m.group(2).lower(), m.group(2))
            found.setdefault("grade", value)
    return found


def _last_words(text: str, n: int) -> str:
    return " ".join(text.split()[-n:])


def _first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])
