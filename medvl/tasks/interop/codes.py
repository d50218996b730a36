"""DICOM codes for disease concepts of the knowledge graph.

A finding is coded with the concept's own code in a DICOM coding scheme where the graph has one: SNOMED CT (``SCT``)
from the concept's xrefs first, then ICD-10 (``I10``, from ICD-10-CM concepts or xrefs). A concept without one keeps
its ontology code under a private coding scheme (designators start with ``99``, as DICOM PS3.16 section 8 asks for
local schemes): ``99DOID`` for the Human Disease Ontology and ``99ONCOTREE`` for OncoTree. A class that is not a graph
concept (free text) has no code at all and cannot be reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medvl.errors import InputError

__all__ = ["PRIVATE_SCHEMES", "STANDARD_XREFS", "ConceptCode", "PrivateScheme", "code_concepts", "concept_code"]


@dataclass(frozen=True)
class PrivateScheme:
    """A coding scheme without a DICOM designator, declared in the object's Coding Scheme Identification."""

    designator: str
    name: str
    responsible_organization: str


#: graph source -> private scheme for its own ids (the fallback when no standard code is known)
PRIVATE_SCHEMES: dict[str, PrivateScheme] = {
    "DOID": PrivateScheme("99DOID", "Human Disease Ontology", "Disease Ontology, Institute for Genome Sciences"),
    "ONCOTREE": PrivateScheme("99ONCOTREE", "OncoTree", "Memorial Sloan Kettering Cancer Center"),
}
#: (graph xref vocabulary, DICOM coding scheme designator), most preferred first
STANDARD_XREFS: tuple[tuple[str, str], ...] = (("SNOMEDCT", "SCT"), ("ICD10CM", "I10"))
#: graph sources whose own ids are codes of a standard scheme
STANDARD_SOURCES: dict[str, str] = {"ICD10CM": "I10"}
_MEANING_MAX = 64  # Code Meaning is LO: at most 64 characters


@dataclass(frozen=True)
class ConceptCode:
    """The code a finding is reported with.

    Attributes:
        concept_id: the graph concept (``DOID:1612``).
        value: code value in ``scheme``.
        scheme: coding scheme designator (``SCT``, ``I10``, ``99DOID``, ...).
        meaning: the concept's name (code meaning).
        standard: whether ``scheme`` is a DICOM-registered scheme (``False`` for the ``99`` fallbacks).
    """

    concept_id: str
    value: str
    scheme: str
    meaning: str
    standard: bool

    def coded(self) -> Any:
        """The code as a highdicom ``CodedConcept``."""
        from highdicom.sr import CodedConcept

        return CodedConcept(self.value, self.scheme, self.meaning[:_MEANING_MAX])

    def to_dict(self) -> dict[str, Any]:
        return {"concept": self.concept_id, "code": self.value, "scheme": self.scheme, "meaning": self.meaning,
                "standard": self.standard}


def concept_code(graph: Any, concept_id: str) -> ConceptCode | None:
    """The DICOM code of one graph concept, or ``None`` when it has none (an id the graph does not know)."""
    from medvl.tasks.zeroshot.classifier import NORMAL_ID

    if concept_id == NORMAL_ID:  # the KEEP rule's normal-tissue class
        return ConceptCode(NORMAL_ID, "17621005", "SCT", "Normal", True)
    if concept_id not in graph:
        return None
    concept = graph.concept(graph.resolve(concept_id))
    prefix, _, local = concept.id.partition(":")
    for vocab, scheme in STANDARD_XREFS:
        values = concept.xrefs.get(vocab) or []
        if values:
            return ConceptCode(concept.id, str(values[0]), scheme, concept.name, True)
        if STANDARD_SOURCES.get(prefix) == scheme:
            return ConceptCode(concept.id, local, scheme, concept.name, True)
    private = PRIVATE_SCHEMES.get(prefix)
    if private is None:
        return None
    return ConceptCode(concept.id, local, private.designator, concept.name, False)


def code_concepts(graph: Any, classes: Sequence[tuple[str, str]]) -> dict[str, ConceptCode]:
    """Codes for ``(class_id, name)`` pairs; every class must have one.

    Raises:
        InputError: naming the classes without a code (free-text classes), before anything is written.
    """
    codes: dict[str, ConceptCode] = {}
    missing = []
    for class_id, name in classes:
        code = concept_code(graph, class_id)
        if code is None:
            missing.append(name or class_id)
        else:
            codes[class_id] = code
    if missing:
        raise InputError(None, f"no code for the class(es) {', '.join(repr(m) for m in missing[:5])}: a DICOM SR "
                               "codes every finding, and free-text classes have no code in any ontology; name them by "
                               "graph concept id (medvl ontology search) instead")
    return codes
