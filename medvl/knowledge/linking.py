"""Held-out synonyms for the synonym-linking evaluation, and the leakage rules that keep them out of training.

Synonym linking asks a text encoder to retrieve a concept from one of its synonyms among the names of all concepts.
To measure it honestly, one synonym per concept with at least two is held out (seeded) before training, and no text
that folds to the same key (:func:`leak_key`: case, plural, British/US spelling and qualifiers ignored) may enter
training, neither from the concept's own group nor from the extra sources added by :func:`add_linked_texts`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medvl.knowledge.concept import SemanticGroup
    from medvl.knowledge.graph import DiseaseGraph

__all__ = ["HeldOutSplit", "add_linked_texts", "hold_out_synonyms", "leak_key"]

_QUALIFIER = re.compile(r"\([^)]*\)|\[[^]]*\]|,? *\bnos\b|,? *\bnot otherwise specified\b")


def leak_key(text: str) -> str:
    """Comparison key for leakage checks: lower case, qualifiers (``(...)``, ``NOS``) and punctuation dropped,
    British/US ``ae``/``oe`` folded, plural ``s`` stripped from each word."""
    text = _QUALIFIER.sub(" ", text.lower()).replace("ae", "e").replace("oe", "e")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


@dataclass
class HeldOutSplit:
    """Semantic groups with the held-out synonyms removed.

    Attributes:
        ids: concept id of each group.
        texts: the texts of each group that training may use (the name first).
        kinds: the kind of each text (``name``, ``synonym``, ``definition``, ``hierarchy``).
        queries: the held-out ``(synonym, concept id)`` pairs.
    """

    ids: list[str]
    texts: list[list[str]]
    kinds: list[list[str]]
    queries: list[tuple[str, str]]


def hold_out_synonyms(groups: Sequence[SemanticGroup], seed: int = 0, holdout: bool = True) -> HeldOutSplit:
    """Hold one synonym out of every group with two or more (drawn with ``random.Random(seed)``).

    Besides the synonym itself, the group loses every text that starts with it (hierarchy captions ``"<synonym>, a
    ..."``) and every text whose head folds to the same :func:`leak_key`.
    """
    rng = random.Random(seed)
    split = HeldOutSplit([], [], [], [])
    for group in groups:
        synonyms = group.by_kind("synonym")
        held = rng.choice(synonyms) if holdout and len(synonyms) >= 2 else None
        kept = list(zip(group.texts, group.kinds, strict=True))
        if held is not None:
            split.queries.append((held, group.concept_id))
            key = leak_key(held)
            kept = [(t, k) for t, k in kept
                    if t != held and not t.startswith(held + ", ") and leak_key(t.split(", ")[0]) != key]
        split.ids.append(group.concept_id)
        split.texts.append([t for t, _ in kept])
        split.kinds.append([k for _, k in kept])
    return split


def add_linked_texts(split: HeldOutSplit, graph: DiseaseGraph) -> int:
    """Add names and EXACT/RELATED synonyms of the same concept and its linked concepts in ``graph`` as synonyms.

    Texts whose :func:`leak_key` equals that of any held-out query (of any concept) are never added, so the
    linking evaluation stays free of leakage; all-capital labels (codes, acronyms) are skipped. Returns the number of
    texts added.
    """
    held = {leak_key(q) for q, _ in split.queries}
    added = 0
    for i, cid in enumerate(split.ids):
        if cid not in graph:
            continue
        seen = {leak_key(t) for t in split.texts[i]}
        for other in [cid, *graph.links(cid)]:
            concept = graph.concept(other)
            for text in [concept.name, *(s.text for s in concept.synonyms if s.scope in ("EXACT", "RELATED"))]:
                key = leak_key(text)
                if key and key not in held and key not in seen and not text.isupper():
                    seen.add(key)
                    split.texts[i].append(text)
                    split.kinds[i].append("synonym")
                    added += 1
    return added
