"""Concept groups from a cohort's own text: every caption or report tagged with the disease graph's tagger.

An item whose text asserts a concept (a mention the tagger does not mark negated: "no evidence of carcinoma" is no
label) joins that concept's KEEP semantic group (its first asserted concept when it names several). Hierarchy
relatives of the groups are kept out of each other's negatives (``group_relatives``). An item that asserts no
concept is either a group of its own or dropped (``untagged``). KEEP's hierarchy captions of a group's concept can
replace an item's text with a probability (``hierarchy_fraction``). The tagged concepts also give multi-hot labels
(RenalCLIP's report-derived attributes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError

__all__ = ["ConceptOptions", "ConceptTags", "GroupTable", "build_groups"]


@dataclass
class ConceptOptions(Config):
    """How texts become concept groups.

    Attributes:
        tag: tag the texts (``False``: every item is its own group).
        untagged: what an item without an asserted concept becomes: ``own-group`` or ``drop``.
        hierarchy_fraction: probability that an item's text is replaced by a hierarchy caption of its concept
            (``"clear cell renal cell carcinoma, a renal cell carcinoma, a kidney cancer"``).
        max_ancestors: ancestors named in a hierarchy caption.
        graph: a graph file from ``medvl ontology build`` (default: every bundled ontology).
        ids: tag only these concepts and their descendants (default: every concept).
    """

    tag: bool = True
    untagged: Literal["own-group", "drop"] = "own-group"
    hierarchy_fraction: float = 0.0
    max_ancestors: int = 2
    graph: str | None = None
    ids: list[str] | None = None

    def validate(self) -> None:
        if not 0.0 <= self.hierarchy_fraction <= 1.0:
            raise ConfigError("ConceptOptions.hierarchy_fraction: must be within [0, 1]")


@functools.lru_cache(maxsize=4)
def _graph_and_tagger(graph_file: str | None, roots: tuple[str, ...] | None) -> tuple[Any, Any]:
    """The graph and its tagger, built once per process (every split and stage of a run shares them)."""
    from medvl.knowledge import DiseaseGraph, default_graph
    from medvl.knowledge.tagger import ConceptTagger

    graph = DiseaseGraph.load(graph_file) if graph_file else default_graph()
    ids = None
    if roots:
        ids = sorted({d for root in roots for d in [graph.resolve(root), *graph.descendants(root)]})
    return graph, ConceptTagger.from_graph(graph, ids)


class ConceptTags:
    """The disease graph and its tagger, and the concepts each text asserts."""

    def __init__(self, opts: ConceptOptions):
        self.opts = opts
        self.graph, self.tagger = _graph_and_tagger(opts.graph, tuple(opts.ids) if opts.ids else None)

    def asserted(self, text: str) -> list[str]:
        """Concepts the text asserts (negated mentions excluded), in order, once each."""
        return self.tagger.labels(text) if self.opts.tag else []

    def is_concept(self, label: str) -> bool:
        return label in self.graph

    def name(self, concept_id: str) -> str:
        return self.graph.concept(concept_id).name

    def hierarchy_captions(self, concept_id: str) -> list[str]:
        """Hierarchy captions of a concept under its name and exact synonyms (none at the top of the graph)."""
        from medvl.knowledge.groups import GroupConfig, hierarchy_caption

        concept = self.graph.concept(concept_id)
        skip = set(GroupConfig().skip_ancestors)
        names = [concept.name, *(s.text for s in concept.synonyms if s.scope == "EXACT")]
        caps = (hierarchy_caption(self.graph, concept_id, n, self.opts.max_ancestors, skip) for n in names)
        return list(dict.fromkeys(c for c in caps if c))


@dataclass
class GroupTable:
    """Items -> groups: ``group_ids`` per kept item, ``group_names`` (a concept id, or ``row N`` for an untagged
    item's own group), ``group_relatives`` ``[G, G]``, and which items were kept."""

    group_ids: list[int]
    group_names: list[str]
    group_relatives: np.ndarray
    kept: list[int]
    concept_groups: int = 0
    items_per_concept: dict[str, int] = field(default_factory=dict)


def build_groups(concepts: list[list[str]], rows: list[int], tags: ConceptTags | None, untagged: str) -> GroupTable:
    """Groups of items from their asserted concepts (first one each); ``rows`` are the items' manifest rows."""
    index: dict[str, int] = {}
    names: list[str] = []
    group_ids: list[int] = []
    kept: list[int] = []
    per_concept: dict[str, int] = {}
    for i, found in enumerate(concepts):
        if found:
            key = found[0]
            per_concept[key] = per_concept.get(key, 0) + 1
        elif untagged == "drop":
            continue
        else:
            key = f"row {rows[i]}"
        if key not in index:
            index[key] = len(names)
            names.append(key)
        group_ids.append(index[key])
        kept.append(i)
    concept_names = [n for n in names if n in per_concept]
    mask = np.eye(len(names), dtype=bool)
    if tags is not None and concept_names:
        where = [index[n] for n in concept_names]
        mask[np.ix_(where, where)] = tags.graph.relatives_mask(concept_names)
    return GroupTable(group_ids, names, mask, kept, len(concept_names), per_concept)
