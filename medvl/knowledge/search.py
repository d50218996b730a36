"""Ranked lookup of concepts by name or synonym: ids, exact (normalised) matches first, then fuzzy ones.

The ranking is one function, :func:`ranked_search`, over a :class:`LabelTable`: the in-memory table of a
:class:`~medvl.knowledge.graph.DiseaseGraph` (:class:`SearchIndex`) and the on-disk index
(:class:`~medvl.knowledge.store.GraphIndex`) give the same answers. The fuzzy tier is rapidfuzz ``WRatio`` over every
distinct label, computed by :class:`~medvl.knowledge.fuzzy.FuzzyIndex` without scoring each one;
:func:`reference_search` keeps the full scan as the reference the tests and benchmarks compare with.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from medvl.knowledge.text import normalise

if TYPE_CHECKING:
    from medvl.knowledge.fuzzy import FuzzyIndex
    from medvl.knowledge.graph import DiseaseGraph

#: preferred sources when several concepts share a label
SOURCE_RANK = {"DOID": 0, "ONCOTREE": 1, "ICD10CM": 2}
#: label kinds, best first
_KIND_RANK = {"id": 0, "name": 1, "EXACT": 2, "RELATED": 3, "NARROW": 4, "BROAD": 5}
#: id prefixes tried for a query without one, in this order
ID_PREFIXES = ("ONCOTREE", "ICD10CM", "DOID")

Match = tuple[str, float, int]  # (label key, WRatio score, position), as rapidfuzz's process.extract gives


@dataclass(frozen=True)
class SearchHit:
    """One search result: the concept, the label that matched, how, and a score in [0, 100]."""

    concept_id: str
    name: str
    matched: str
    match: str  # "id", "exact" or "fuzzy"
    score: float

    def to_dict(self) -> dict:
        return {"id": self.concept_id, "name": self.name, "matched": self.matched, "match": self.match,
                "score": round(self.score, 2)}


class LabelTable(Protocol):
    """What :func:`ranked_search` reads: id resolution, the normalised-label table, names and the fuzzy matcher."""

    def resolve_id(self, concept_id: str) -> str | None:
        """The current id of a concept id or alternative id; ``None`` when unknown."""

    def exact(self, key: str) -> Sequence[tuple[str, str]]:
        """``(concept id, label)`` of every label whose normalised form is ``key``, best first."""

    def exact_many(self, keys: Sequence[str]) -> dict[str, Sequence[tuple[str, str]]]:
        """:meth:`exact` for several keys at once."""

    def name(self, concept_id: str) -> str:
        """The concept's preferred name."""

    def fuzzy(self, key: str, limit: int, cutoff: float) -> list[Match]:
        """The ``limit`` best labels by WRatio (``process.extract`` order)."""


def label_rows(graph: DiseaseGraph) -> dict[str, list[tuple[str, str]]]:
    """Normalised label -> ``(concept id, label)`` rows, best first (kind, then source, then id, then label)."""
    table: dict[str, list[tuple[int, str, str]]] = {}
    for concept in graph:
        src = SOURCE_RANK.get(concept.source, 3)
        entries = [(concept.name, "name")] + [(s.text, s.scope) for s in concept.synonyms]
        for text, kind in entries:
            key = normalise(text)
            if key:
                table.setdefault(key, []).append((_KIND_RANK[kind] * 10 + src, concept.id, text))
    return {key: [(cid, label) for _, cid, label in sorted(rows)] for key, rows in table.items()}


def ranked_search(table: LabelTable, text: str, k: int = 10, fuzzy_cutoff: float = 60.0) -> list[SearchHit]:
    """Ids first (with or without their prefix), then exact normalised matches, then fuzzy matches, ``k`` at most."""
    hits: list[SearchHit] = []
    seen: set[str] = set()

    def add(concept_id: str, matched: str, how: str, score: float) -> None:
        if concept_id not in seen and len(hits) < k:
            seen.add(concept_id)
            hits.append(SearchHit(concept_id, table.name(concept_id), matched, how, score))

    query = text.strip()
    candidates = [query] if ":" in query else [f"{prefix}:{query}" for prefix in ID_PREFIXES]
    for cid in candidates:
        resolved = table.resolve_id(cid)
        if resolved is not None:
            add(resolved, query, "id", 100.0)
    key = normalise(text)
    if not key:
        return hits
    for concept_id, label in table.exact(key):
        add(concept_id, label, "exact", 100.0)
    if len(hits) < k:
        from rapidfuzz import fuzz

        matches = table.fuzzy(key, max(4 * k, 20), fuzzy_cutoff)
        # WRatio rewards partial matches; break its ties by the plain similarity so closer spellings come first
        ranked = sorted(matches, key=lambda m: (-round(m[1], 1), -fuzz.ratio(key, m[0])))
        rows = table.exact_many([m[0] for m in ranked])
        for label_key, score, _ in ranked:
            for concept_id, label in rows.get(label_key, ()):
                add(concept_id, label, "fuzzy", float(score) - 0.01)
    return hits


class SearchIndex:
    """The label table of an in-memory graph (:meth:`DiseaseGraph.search` builds one on first use).

    Args:
        graph: the graph.
        fuzzy: a prebuilt matcher over the same labels (the on-disk index holds one); built on first use otherwise.
    """

    def __init__(self, graph: DiseaseGraph, fuzzy: FuzzyIndex | None = None):
        self.graph = graph
        self.rows = label_rows(graph)
        self.keys = list(self.rows)
        self._fuzzy = fuzzy

    @property
    def matcher(self) -> FuzzyIndex:
        if self._fuzzy is None:
            from medvl.knowledge.fuzzy import FuzzyIndex

            self._fuzzy = FuzzyIndex.build(self.keys)
        return self._fuzzy

    def resolve_id(self, concept_id: str) -> str | None:
        return self.graph.resolve(concept_id) if concept_id in self.graph else None

    def exact(self, key: str) -> Sequence[tuple[str, str]]:
        return self.rows.get(key, ())

    def exact_many(self, keys: Sequence[str]) -> dict[str, Sequence[tuple[str, str]]]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    def name(self, concept_id: str) -> str:
        return self.graph.concept(concept_id).name

    def fuzzy(self, key: str, limit: int, cutoff: float) -> list[Match]:
        return self.matcher.extract(key, limit, cutoff)

    def search(self, text: str, k: int = 10, fuzzy_cutoff: float = 60.0) -> list[SearchHit]:
        return ranked_search(self, text, k, fuzzy_cutoff)


class _ScanTable(SearchIndex):
    """The label table with the fuzzy tier as a full rapidfuzz scan: the ranking as it was before the index."""

    def fuzzy(self, key: str, limit: int, cutoff: float) -> list[Match]:
        from rapidfuzz import fuzz, process

        return process.extract(key, self.keys, scorer=fuzz.WRatio, limit=limit, score_cutoff=cutoff)


def reference_search(graph: DiseaseGraph) -> Callable[[str, int], list[SearchHit]]:
    """A search function over ``graph`` that scores every label (the baseline of tests and benchmarks)."""
    table = _ScanTable(graph)
    return lambda text, k=10: ranked_search(table, text, k)


def sample_queries(graph: DiseaseGraph, n: int, seed: int = 0) -> list[str]:
    """Deterministic queries such as users type, for parity tests and benchmarks: concept names, synonyms,
    misspellings (one edit) and partial words or labels, a quarter each."""
    rng = random.Random(seed)
    concepts = sorted(graph, key=lambda c: c.id)  # the draw does not depend on the graph's order
    names = [c.name for c in concepts]
    synonyms = [s.text for c in concepts for s in c.synonyms] or names
    queries = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            queries.append(rng.choice(names))
        elif kind == 1:
            queries.append(rng.choice(synonyms))
        elif kind == 2:
            queries.append(_one_edit(rng, rng.choice(names + synonyms)))
        else:
            words = rng.choice(names).split()
            word = rng.choice(words)
            queries.append(word[:max(3, len(word) * 2 // 3)] if rng.random() < 0.5 else " ".join(words[:-1] or words))
    return queries


def _one_edit(rng: random.Random, text: str) -> str:
    chars = list(text)
    at = rng.randrange(len(chars))
    op = rng.choice("dis")
    if op == "d" and len(chars) > 3:
        del chars[at]
    elif op == "i":
        chars.insert(at, rng.choice("aeiourstnl"))
    else:
        chars[at] = rng.choice("aeiourstnl")
    return "".join(chars)
