"""The records a :class:`~medvl.knowledge.graph.DiseaseGraph` holds: concepts, synonyms, semantic groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: synonym scopes of the OBO format; ICD-10-CM inclusion terms are stored as RELATED
SCOPES = ("EXACT", "RELATED", "BROAD", "NARROW")


@dataclass(frozen=True, slots=True)
class Synonym:
    """One alternative name of a concept with its OBO scope (EXACT, RELATED, BROAD or NARROW)."""

    text: str
    scope: str = "EXACT"


@dataclass(slots=True)
class Concept:
    """A disease (or tumour type, or diagnosis code) from one ontology.

    Attributes:
        id: CURIE such as ``DOID:4467``, ``ONCOTREE:CCRCC`` or ``ICD10CM:C64.9``.
        name: preferred label.
        synonyms: alternative labels with their scope.
        definitions: textual definitions (Disease Ontology ``def``), possibly empty.
        parents: ids of the direct is-a parents.
        xrefs: cross-references keyed by vocabulary (``NCI``, ``UMLS``, ``ICDO``, ``ICD10CM``, ``MESH``, ...), each a
            list of local codes (``{"NCI": ["C4033"]}``).
        source: the ontology it comes from (``DOID``, ``ONCOTREE``, ``ICD10CM`` or the prefix of a user OBO file).
        alt_ids: obsolete or merged ids that resolve to this concept.
        links: ids of equivalent concepts in other sources, found through agreeing cross-references.
        origin: ``file:line`` where the concept was read (for error messages).
    """

    id: str
    name: str
    synonyms: list[Synonym] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    xrefs: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    alt_ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    origin: str = ""

    @property
    def definition(self) -> str:
        """The first definition, or an empty string."""
        return self.definitions[0] if self.definitions else ""

    def names(self, scopes: tuple[str, ...] | None = ("EXACT",)) -> list[str]:
        """The name followed by the synonyms of the given scopes (all scopes when ``None``), without duplicates."""
        out = [self.name]
        seen = {self.name.lower()}
        for syn in self.synonyms:
            if (scopes is None or syn.scope in scopes) and syn.text.lower() not in seen:
                seen.add(syn.text.lower())
                out.append(syn.text)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON form (empty fields left out)."""
        data: dict[str, Any] = {"id": self.id, "name": self.name, "source": self.source}
        if self.synonyms:
            data["synonyms"] = [[s.text, s.scope] for s in self.synonyms]
        for key in ("definitions", "parents", "alt_ids", "links"):
            value = getattr(self, key)
            if value:
                data[key] = list(value)
        if self.xrefs:
            data["xrefs"] = self.xrefs
        if self.origin:
            data["origin"] = self.origin
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Concept:
        return cls(
            id=data["id"],
            name=data["name"],
            synonyms=[Synonym(t, s) for t, s in data.get("synonyms", ())],
            definitions=list(data.get("definitions", ())),
            parents=list(data.get("parents", ())),
            xrefs={k: list(v) for k, v in data.get("xrefs", {}).items()},
            source=data.get("source", ""),
            alt_ids=list(data.get("alt_ids", ())),
            links=list(data.get("links", ())),
            origin=data.get("origin", ""),
        )


@dataclass(frozen=True, slots=True)
class SemanticGroup:
    """KEEP semantic group: every text that describes one disease.

    ``texts`` and ``kinds`` run in parallel; a kind is ``name``, ``synonym``, ``definition`` or ``hierarchy``
    (the ancestor chain rendered as a caption, e.g. "clear cell renal cell carcinoma, a renal cell carcinoma").
    """

    concept_id: str
    texts: tuple[str, ...]
    kinds: tuple[str, ...]

    def by_kind(self, kind: str) -> list[str]:
        return [t for t, k in zip(self.texts, self.kinds, strict=True) if k == kind]
