"""Ranked lookup of concepts by name or synonym: exact (normalised) matches first, then fuzzy ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medvl.knowledge.text import normalise

if TYPE_CHECKING:
    from medvl.knowledge.graph import DiseaseGraph

#: preferred sources when several concepts share a label
SOURCE_RANK = {"DOID": 0, "ONCOTREE": 1, "ICD10CM": 2}
#: label kinds, best first
_KIND_RANK = {"id": 0, "name": 1, "EXACT": 2, "RELATED": 3, "NARROW": 4, "BROAD": 5}


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


class SearchIndex:
    """Normalised label -> concepts table plus a fuzzy matcher over the distinct labels (rapidfuzz)."""

    def __init__(self, graph: DiseaseGraph):
        self.graph = graph
        self.exact: dict[str, list[tuple[int, str, str]]] = {}
        for concept in graph:
            src = SOURCE_RANK.get(concept.source, 3)
            entries = [(concept.name, "name")] + [(s.text, s.scope) for s in concept.synonyms]
            for text, kind in entries:
                key = normalise(text)
                if key:
                    self.exact.setdefault(key, []).append((_KIND_RANK[kind] * 10 + src, concept.id, text))
        for rows in self.exact.values():
            rows.sort()
        self.keys = list(self.exact)

    def search(self, text: str, k: int = 10, fuzzy_cutoff: float = 60.0) -> list[SearchHit]:
        hits: list[SearchHit] = []
        seen: set[str] = set()

        def add(concept_id: str, matched: str, how: str, score: float) -> None:
            if concept_id not in seen and len(hits) < k:
                seen.add(concept_id)
                hits.append(SearchHit(concept_id, self.graph.concept(concept_id).name, matched, how, score))

        query = text.strip()
        candidates = [query] if ":" in query else [f"{prefix}:{query}" for prefix in ("ONCOTREE", "ICD10CM", "DOID")]
        for cid in candidates:
            if cid in self.graph:
                add(self.graph.resolve(cid), query, "id", 100.0)
        key = normalise(text)
        if not key:
            return hits
        for _, concept_id, label in self.exact.get(key, ()):
            add(concept_id, label, "exact", 100.0)
        if len(hits) < k:
            self._fuzzy(key, k, fuzzy_cutoff, add)
        return hits

    def _fuzzy(self, key: str, k: int, cutoff: float, add) -> None:
        from rapidfuzz import fuzz, process

        matches = process.extract(key, self.keys, scorer=fuzz.WRatio, limit=max(4 * k, 20), score_cutoff=cutoff)
        # WRatio rewards partial matches; break its ties by the plain similarity so closer spellings come first
        ranked = sorted(matches, key=lambda m: (-round(m[1], 1), -fuzz.ratio(key, m[0])))
        for label_key, score, _ in ranked:
            for _, concept_id, label in self.exact[label_key]:
                add(concept_id, label, "fuzzy", float(score) - 0.01)
