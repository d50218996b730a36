"""Finding concept mentions in free text: longest match over names and synonyms (case- and plural-insensitive).

Short all-capital labels (``AML``, ``CCRCC``) match only in capitals, so ordinary words such as "all" or "as" are
not mistaken for acronyms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medvl.knowledge.search import SOURCE_RANK
from medvl.knowledge.text import is_acronym, normalise, singular, words

if TYPE_CHECKING:
    from medvl.knowledge.graph import DiseaseGraph

_KIND_RANK = {"name": 0, "EXACT": 1, "RELATED": 2, "NARROW": 3, "BROAD": 4}


@dataclass(frozen=True)
class Mention:
    """A concept found in a text: character span, the text there, the best concept and all candidates."""

    start: int
    end: int
    text: str
    concept_id: str
    candidates: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text, "id": self.concept_id,
                "candidates": list(self.candidates)}


class ConceptTagger:
    """Dictionary tagger over concept labels.

    Args:
        lexicon: normalised label (see :func:`~medvl.knowledge.text.normalise`) -> concept ids, best first.
        acronyms: case-sensitive single-word labels -> concept ids, best first.
    """

    def __init__(self, lexicon: dict[str, list[str]], acronyms: dict[str, list[str]] | None = None):
        self.lexicon = lexicon
        self.acronyms = acronyms or {}
        self._prefixes: set[str] = set()
        self.max_words = 1
        for key in lexicon:
            parts = key.split(" ")
            self.max_words = max(self.max_words, len(parts))
            for n in range(1, len(parts)):
                self._prefixes.add(" ".join(parts[:n]))

    @classmethod
    def from_graph(cls, graph: DiseaseGraph, ids: Iterable[str] | None = None,
                   scopes: Sequence[str] = ("EXACT", "RELATED"), min_chars: int = 3) -> ConceptTagger:
        """Tagger over the names and synonyms (of ``scopes``) of ``ids``.

        The default is every concept except the OncoTree root and its tissue nodes ("Liver", "Breast"), which name
        sites, not diseases.
        """
        ranked: dict[str, list[tuple[int, str]]] = {}
        acro: dict[str, list[tuple[int, str]]] = {}
        skip: set[str] = set()
        if ids is None and "ONCOTREE:TISSUE" in graph:
            skip = {"ONCOTREE:TISSUE", *graph.children("ONCOTREE:TISSUE")}
        concepts = graph if ids is None else (graph.concept(i) for i in ids)
        for concept in concepts:
            if concept.id in skip:
                continue
            src = SOURCE_RANK.get(concept.source, 3)
            labels = [(concept.name, "name")] + [(s.text, s.scope) for s in concept.synonyms if s.scope in scopes]
            for label, kind in labels:
                rank = _KIND_RANK[kind] * 10 + src
                if is_acronym(label):
                    if len(label) >= 2:
                        acro.setdefault(label, []).append((rank, concept.id))
                    continue
                key = normalise(label)
                if len(key) >= min_chars:
                    ranked.setdefault(key, []).append((rank, concept.id))
        return cls(_best_first(ranked), _best_first(acro))

    def find(self, text: str) -> list[Mention]:
        """Non-overlapping mentions, left to right, each the longest label starting at its position."""
        toks = words(text)
        norm = [singular(w) for w, _, _ in toks]
        mentions = []
        i = 0
        while i < len(toks):
            best = self._longest(norm, i)
            if best is None and toks[i][0] in self.acronyms:
                best = (i, self.acronyms[toks[i][0]])
            if best is None:
                i += 1
                continue
            j, ids = best
            start, end = toks[i][1], toks[j][2]
            mentions.append(Mention(start, end, text[start:end], ids[0], tuple(ids)))
            i = j + 1
        return mentions

    def _longest(self, norm: list[str], i: int) -> tuple[int, list[str]] | None:
        best = None
        key = ""
        for j in range(i, min(len(norm), i + self.max_words)):
            key = norm[j] if j == i else f"{key} {norm[j]}"
            if key in self.lexicon:
                best = (j, self.lexicon[key])
            if key not in self._prefixes:
                break
        return best

    def to_dict(self) -> dict[str, Any]:
        return {"lexicon": self.lexicon, "acronyms": self.acronyms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConceptTagger:
        return cls(data["lexicon"], data.get("acronyms", {}))


def _best_first(table: dict[str, list[tuple[int, str]]]) -> dict[str, list[str]]:
    out = {}
    for key, rows in table.items():
        ids = []
        for _, cid in sorted(rows):
            if cid not in ids:
                ids.append(cid)
        out[key] = ids
    return out
