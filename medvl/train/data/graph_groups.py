"""Text/text pairs from the disease graph's KEEP semantic groups: the data of the knowledge-encoder stage.

Every group holds the texts of one concept (name, synonyms, definitions, hierarchy captions); two texts of one group
are positives, and hierarchy relatives are kept out of each other's negatives by the knowledge-group loss. An item is
an anchor text (``text``) and one or several positive texts of the same group (``text2``), drawn by kind weight.

With ``holdout`` one synonym per concept with two or more is held out (seeded) and never reaches training
(:mod:`medvl.knowledge.linking`): these are the queries of the ``synonym-linking`` evaluation, answered among the
names of every concept (``group_texts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.knowledge.groups import GroupConfig
from medvl.train.data.registry import register_dataset

__all__ = ["GraphGroupOptions", "GraphGroupPairs"]


@dataclass
class GraphGroupOptions(Config):
    """Which concepts, which texts, and how an item is drawn.

    Attributes:
        root: this concept and its descendants (e.g. ``DOID:1612``). Give exactly one of ``root``, ``ids``, ``source``.
        ids: explicit concept ids.
        source: every concept of this source (``DOID``), in graph order.
        max_concepts: keep at most this many concepts (tiny recipes).
        sources: graph sources to build (see :class:`~medvl.knowledge.BuildConfig`; default: every bundled one).
        graph: a graph file from ``medvl ontology build`` instead of ``sources``.
        extra_sources: more sources whose names and synonyms of the same and of linked concepts are added to the
            groups as synonyms (OncoTree, ICD-10-CM inclusion terms); never a text equal to a held-out query.
        group: what goes into a semantic group.
        items: ``texts`` (one item per text: every text is an anchor in turn) or ``concepts`` (one item per concept;
            the anchor is the name with probability ``name_anchor_prob``, else any of its texts).
        texts_per_item: the anchor plus up to ``texts_per_item - 1`` distinct positives (fewer when the group is
            smaller); above 2, ``text2`` is a list and every positive pairs with the anchor.
        name_anchor_prob: see ``items``.
        kind_weights: how often each kind of text (``name``, ``synonym``, ``definition``, ``hierarchy``) is drawn as
            a positive, relative to each other (a kind not listed weighs 1).
        holdout: hold one synonym out of every concept with two or more (for ``synonym-linking``).
        holdout_seed: seeds that draw.
    """

    root: str | None = None
    ids: list[str] | None = None
    source: str | None = None
    max_concepts: int | None = None
    sources: list[str] | None = None
    graph: str | None = None
    extra_sources: list[str] = field(default_factory=list)
    group: GroupConfig = field(default_factory=GroupConfig)
    items: Literal["texts", "concepts"] = "texts"
    texts_per_item: int = 2
    name_anchor_prob: float = 0.0
    kind_weights: dict[str, float] = field(default_factory=dict)
    holdout: bool = False
    holdout_seed: int = 0

    def validate(self) -> None:
        if sum(x is not None for x in (self.root, self.ids, self.source)) != 1:
            raise ConfigError("GraphGroupOptions: give exactly one of 'root', 'ids' and 'source'")
        if self.graph is not None and (self.sources or self.extra_sources):
            raise ConfigError("GraphGroupOptions.graph: a graph file replaces 'sources' and 'extra_sources'")
        if self.texts_per_item < 2:
            raise ConfigError("GraphGroupOptions.texts_per_item: must be >= 2 (an anchor and a positive)")
        if not 0.0 <= self.name_anchor_prob <= 1.0:
            raise ConfigError("GraphGroupOptions.name_anchor_prob: must be within [0, 1]")
        if any(w < 0 for w in self.kind_weights.values()):
            raise ConfigError("GraphGroupOptions.kind_weights: weights must be >= 0")


def _load_graphs(opts: GraphGroupOptions) -> tuple[Any, Any]:
    """The graph of the groups, and the graph the extra texts come from (``None`` without extra sources)."""
    from medvl.knowledge import BuildConfig, DiseaseGraph, cached_graph

    if opts.graph is not None:
        return DiseaseGraph.load(opts.graph), None
    base = BuildConfig(sources=opts.sources) if opts.sources else BuildConfig()
    graph = cached_graph(base)
    if not opts.extra_sources:
        return graph, None
    # built together with the base sources, so cross-references link into the base concepts
    return graph, cached_graph(BuildConfig(sources=[*base.sources, *opts.extra_sources]))


def _concepts(graph: Any, opts: GraphGroupOptions) -> list[Any]:
    if opts.source is not None:
        groups = graph.groups(source=opts.source, config=opts.group)
        if not groups:
            raise ConfigError(f"dataset 'graph-groups': no concepts of source {opts.source!r} in the graph")
        return groups[: opts.max_concepts] if opts.max_concepts else groups
    if opts.ids is not None:
        ids = [graph.resolve(i) for i in opts.ids]
    else:
        ids = sorted({graph.resolve(opts.root), *graph.descendants(opts.root)})
    return graph.groups(ids[: opts.max_concepts] if opts.max_concepts else ids, config=opts.group)


@register_dataset("graph-groups", GraphGroupOptions)
class GraphGroupPairs:
    """The knowledge-encoder pairs of the disease graph (see the module docstring).

    Attributes:
        group_names: concept id of every group (all concepts, also those with a single text: linking candidates).
        group_texts: every concept's name (the candidates of synonym linking, the ``bank`` loss's bank).
        group_relatives: ``[G, G]`` bool, hierarchy relatives.
        linking_queries: held-out ``(synonym, group index)`` pairs.
        group_ids: the group of each item (only groups with two or more texts have items).
        sample_weights: per item, 1 + the number of synonyms of its concept (the ``distinct`` sampler's weights).
        extra_texts: how many texts the extra sources added.
    """

    fields: ClassVar[dict[str, str]] = {"text": "text", "text2": "text"}

    def __init__(self, opts: GraphGroupOptions):
        from medvl.knowledge.linking import add_linked_texts, hold_out_synonyms

        self.opts = opts
        self.graph, extra_graph = _load_graphs(opts)
        split = hold_out_synonyms(_concepts(self.graph, opts), opts.holdout_seed, opts.holdout)
        self.extra_texts = add_linked_texts(split, extra_graph) if extra_graph is not None else 0
        self.group_names = split.ids
        self.group_texts = [self.graph.concept(c).name for c in split.ids]
        self.texts_by_group, self.kinds_by_group = split.texts, split.kinds
        position = {c: i for i, c in enumerate(split.ids)}
        self.linking_queries = [(text, position[cid]) for text, cid in split.queries]
        self.group_relatives = torch.as_tensor(self.graph.relatives_mask(split.ids))
        trainable = [gi for gi, texts in enumerate(split.texts) if len(texts) >= 2]
        if len(trainable) < 2:
            raise ConfigError("dataset 'graph-groups': fewer than two concepts with two or more texts")
        if opts.items == "concepts":
            self.index: list[tuple[int, int | None]] = [(gi, None) for gi in trainable]
        else:  # anchors cycle through every text of every group
            self.index = [(gi, ti) for gi in trainable for ti in range(len(split.texts[gi]))]
        self.group_ids = [gi for gi, _ in self.index]
        self.sample_weights = [1.0 + self.kinds_by_group[gi].count("synonym") for gi in self.group_ids]

    def __len__(self) -> int:
        return len(self.index)

    def texts(self) -> list[str]:
        return list(dict.fromkeys(t for gi in dict.fromkeys(self.group_ids) for t in self.texts_by_group[gi]))

    def siblings(self) -> list[list[int]]:
        """Per item, the items of hierarchy siblings (other children of its parents): hard negatives that the
        hierarchy mask keeps, since siblings are neither ancestors nor descendants. Concept items only."""
        if self.opts.items != "concepts":
            raise ConfigError("dataset 'graph-groups': siblings need items: concepts")
        item_of = {self.group_names[gi]: i for i, gi in enumerate(self.group_ids)}
        out = []
        for i, gi in enumerate(self.group_ids):
            cid = self.group_names[gi]
            sibs = {c for p in self.graph.parents(cid) for c in self.graph.children(p)}
            out.append(sorted(item_of[c] for c in sibs if c in item_of and item_of[c] != i))
        return out

    def _positives(self, gi: int, anchor: int, rng: torch.Generator) -> list[str]:
        texts, kinds = self.texts_by_group[gi], self.kinds_by_group[gi]
        others = [j for j in range(len(texts)) if j != anchor]
        weights = torch.tensor([self.opts.kind_weights.get(kinds[j], 1.0) for j in others], dtype=torch.float64)
        if not bool((weights > 0).any()):
            weights = torch.ones(len(others), dtype=torch.float64)
        k = min(self.opts.texts_per_item - 1, int((weights > 0).sum()))
        picks = torch.multinomial(weights, k, replacement=False, generator=rng).tolist()
        return [texts[others[p]] for p in picks]

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        gi, anchor = self.index[index]
        if anchor is None:
            by_name = bool(torch.rand((), generator=rng) < self.opts.name_anchor_prob)
            anchor = 0 if by_name else int(torch.randint(len(self.texts_by_group[gi]), (), generator=rng))
        positives = self._positives(gi, anchor, rng)
        text2: str | list[str] = positives[0] if self.opts.texts_per_item == 2 else positives
        return {"text": self.texts_by_group[gi][anchor], "text2": text2, "group": gi, "label": gi}
