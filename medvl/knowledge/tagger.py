"""Finding concept mentions in free text: longest match over names and synonyms (case- and plural-insensitive).

Short all-capital labels (``AML``, ``CCRCC``) match only in capitals, so ordinary words such as "all" or "as" are
not mistaken for acronyms. :meth:`ConceptTagger.tag` adds each mention's context: negated (NegEx-style, see
:mod:`medvl.knowledge.negation`) and its grade / differentiation qualifiers; :meth:`ConceptTagger.labels` gives the
concepts a text asserts (negated mentions are not labels).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medvl.knowledge.negation import DEFAULT_RULES, ContextRules, clause_ids, negated_mentions, qualifiers
from medvl.knowledge.search import SOURCE_RANK
from medvl.knowledge.text import is_acronym, normalise, singular, words

if TYPE_CHECKING:
    from medvl.knowledge.graph import DiseaseGraph

_KIND_RANK = {"name": 0, "EXACT": 1, "RELATED": 2, "NARROW": 3, "BROAD": 4}
#: ICD-10-CM residual qualifiers that reports never write: "Pneumothorax NOS" is also tagged as "pneumothorax"
_RESIDUAL = re.compile(r"(?:\s+NOS|,\s*unspecified|,\s*not elsewhere classified|,\s*not otherwise specified)$")
#: rank of such a shortened label (after every label written in full)
_RESIDUAL_RANK = 5


@dataclass(frozen=True)
class Mention:
    """A concept found in a text: character span, the text there, the best concept and all candidates.

    ``negated`` and ``qualifiers`` (``(("grade", "2"), ("differentiation", "moderately"))``) are filled by
    :meth:`ConceptTagger.tag`.
    """

    start: int
    end: int
    text: str
    concept_id: str
    candidates: tuple[str, ...]
    negated: bool = False
    qualifiers: tuple[tuple[str, str], ...] = ()

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self.qualifiers)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text, "id": self.concept_id,
                "candidates": list(self.candidates), "negated": self.negated, "qualifiers": self.attributes}


class ConceptTagger:
    """Dictionary tagger over concept labels.

    Args:
        lexicon: normalised label (see :func:`~medvl.knowledge.text.normalise`) -> concept ids, best first.
        acronyms: case-sensitive single-word labels -> concept ids, best first.
        prefixes: every proper word prefix of a lexicon label (computed when not given).
        rules: negation terms and windows used by :meth:`tag`.
    """

    def __init__(self, lexicon: dict[str, list[str]], acronyms: dict[str, list[str]] | None = None,
                 prefixes: Iterable[str] | None = None, rules: ContextRules = DEFAULT_RULES):
        self.lexicon = lexicon
        self.acronyms = acronyms or {}
        self.rules = rules
        self.max_words = 1 + max((key.count(" ") for key in lexicon), default=0)
        if prefixes is None:
            found: set[str] = set()
            for key in lexicon:
                parts = key.split(" ")
                found.update(" ".join(parts[:n]) for n in range(1, len(parts)))
            prefixes = found
        self._prefixes = set(prefixes)

    @classmethod
    def from_graph(cls, graph: DiseaseGraph, ids: Iterable[str] | None = None,
                   scopes: Sequence[str] = ("EXACT", "RELATED"), min_chars: int = 3) -> ConceptTagger:
        """Tagger over the names and synonyms (of ``scopes``) of ``ids``.

        The default is every concept except the OncoTree root and its tissue nodes ("Liver", "Breast"), which name
        sites, not diseases. A label ending in an ICD-10-CM residual qualifier ("Pneumothorax NOS", "Pleural effusion,
        not elsewhere classified") is also matched without it, after every full label.
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
            labels = [(concept.name, _KIND_RANK["name"])]
            labels += [(s.text, _KIND_RANK[s.scope]) for s in concept.synonyms if s.scope in scopes]
            labels += [(_RESIDUAL.sub("", t), _RESIDUAL_RANK) for t, _ in list(labels) if _RESIDUAL.search(t)]
            for label, kind in labels:
                rank = kind * 10 + src
                if is_acronym(label):
                    if len(label) >= 2:
                        acro.setdefault(label, []).append((rank, concept.id))
                    continue
                key = normalise(label)
                if len(key) >= min_chars:
                    ranked.setdefault(key, []).append((rank, concept.id))
        return cls(_best_first(ranked), _best_first(acro))

    # ------------------------------------------------------------------ matching
    def _spans(self, toks: list[tuple[str, int, int]]) -> Iterator[tuple[int, int, list[str]]]:
        """``(first word, last word, concept ids)`` of each non-overlapping longest match, left to right."""
        norm = [singular(w) for w, _, _ in toks]
        i = 0
        while i < len(toks):
            best = self._longest(norm, i)
            if best is None and toks[i][0] in self.acronyms:
                best = (i, self.acronyms[toks[i][0]])
            if best is None:
                i += 1
                continue
            yield i, best[0], best[1]
            i = best[0] + 1

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

    def find(self, text: str) -> list[Mention]:
        """Non-overlapping mentions, left to right, each the longest label starting at its position (no context)."""
        toks = words(text)
        return [Mention(toks[i][1], toks[j][2], text[toks[i][1]:toks[j][2]], ids[0], tuple(ids))
                for i, j, ids in self._spans(toks)]

    def tag(self, text: str) -> list[Mention]:
        """:meth:`find` plus each mention's context: ``negated`` and grade / differentiation ``qualifiers``."""
        toks = words(text)
        found = list(self._spans(toks))
        if not found:
            return []
        spans = [(s, e) for _, s, e in toks]
        clause = clause_ids(text, spans)
        negated = negated_mentions([w.lower() for w, _, _ in toks], clause, [(i, j) for i, j, _ in found], self.rules)
        bounds: dict[int, tuple[int, int]] = {}
        for n, c in enumerate(clause):
            first = bounds.get(c, (spans[n][0], spans[n][1]))[0]
            bounds[c] = (first, spans[n][1])
        out = []
        for (i, j, ids), neg in zip(found, negated, strict=True):
            start, end = toks[i][1], toks[j][2]
            lo, hi = bounds[clause[i]][0], bounds[clause[j]][1]
            extra = tuple(sorted(qualifiers(text, start, end, lo, hi).items()))
            out.append(Mention(start, end, text[start:end], ids[0], tuple(ids), neg, extra))
        return out

    def labels(self, text: str) -> list[str]:
        """Concepts the text asserts: the best concept of every mention that is not negated, in order, once each."""
        return list(dict.fromkeys(m.concept_id for m in self.tag(text) if not m.negated))

    def with_rules(self, rules: ContextRules) -> ConceptTagger:
        """The same lexicon with other negation terms or windows."""
        return ConceptTagger(self.lexicon, self.acronyms, self._prefixes, rules)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"lexicon": self.lexicon, "acronyms": self.acronyms, "prefixes": sorted(self._prefixes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConceptTagger:
        return cls(data["lexicon"], data.get("acronyms", {}), data.get("prefixes"))


def positive(mentions: Iterable[Mention]) -> list[Mention]:
    """The mentions that are not negated (what labels and semantic groups are made of)."""
    return [m for m in mentions if not m.negated]


def _best_first(table: dict[str, list[tuple[int, str]]]) -> dict[str, list[str]]:
    out = {}
    for key, rows in table.items():
        ids = []
        for _, cid in sorted(rows):
            if cid not in ids:
                ids.append(cid)
        out[key] = ids
    return out
