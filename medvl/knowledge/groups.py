"""KEEP semantic groups: the texts that describe one disease, including hierarchy captions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medvl.config import Config, dataclass, field
from medvl.knowledge.concept import SemanticGroup
from medvl.knowledge.templates import article

if TYPE_CHECKING:
    from medvl.knowledge.graph import DiseaseGraph


@dataclass
class GroupConfig(Config):
    """What goes into a semantic group.

    Attributes:
        scopes: synonym scopes to include.
        definitions: include textual definitions.
        max_ancestors: ancestors rendered in a hierarchy caption (0 disables captions).
        skip_ancestors: ancestors too generic to say anything (disease, disease of cellular proliferation, ...).
    """

    scopes: list[str] = field(default_factory=lambda: ["EXACT", "RELATED"])
    definitions: bool = True
    max_ancestors: int = 2
    skip_ancestors: list[str] = field(
        default_factory=lambda: ["DOID:4", "DOID:14566", "DOID:0050686", "DOID:0050687", "ONCOTREE:TISSUE"]
    )


def hierarchy_caption(graph: DiseaseGraph, concept_id: str, name: str | None = None, max_ancestors: int = 2,
                      skip: frozenset[str] | set[str] = frozenset()) -> str | None:
    """``"clear cell renal cell carcinoma, a renal cell carcinoma, a kidney cancer"``: the first-parent chain."""
    chain = [graph.concept(a).name for a in graph.primary_path(concept_id)[1:] if a not in skip][:max_ancestors]
    if not chain:
        return None
    head = name or graph.concept(concept_id).name
    return ", ".join([head] + [f"{article(p)} {p}" for p in chain])


def semantic_group(graph: DiseaseGraph, concept_id: str, config: GroupConfig | None = None) -> SemanticGroup:
    config = config or GroupConfig()
    concept = graph.concept(concept_id)
    texts: list[str] = []
    kinds: list[str] = []
    seen: set[str] = set()

    def add(text: str | None, kind: str) -> None:
        if text and text.lower() not in seen:
            seen.add(text.lower())
            texts.append(text)
            kinds.append(kind)

    add(concept.name, "name")
    synonyms = [s.text for s in concept.synonyms if s.scope in config.scopes]
    for syn in synonyms:
        add(syn, "synonym")
    if config.definitions:
        for definition in concept.definitions:
            add(definition, "definition")
    if config.max_ancestors > 0:
        skip = set(config.skip_ancestors)
        for name in [concept.name, *synonyms]:
            add(hierarchy_caption(graph, concept.id, name, config.max_ancestors, skip), "hierarchy")
    return SemanticGroup(concept.id, tuple(texts), tuple(kinds))
