"""The disease knowledge graph: concepts from several ontologies, is-a hierarchy, cross-source links and queries."""

from __future__ import annotations

import gc
import gzip
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.atomic import atomic_path
from medvl.errors import InputError
from medvl.knowledge.concept import Concept, SemanticGroup, Synonym
from medvl.log import get_logger

if TYPE_CHECKING:
    import numpy as np

    from medvl.knowledge.store import GraphIndex

log = get_logger(__name__)

FORMAT = "medvl-disease-graph"
FORMAT_VERSION = 1
#: field order of :meth:`DiseaseGraph.to_rows`
ROW_FIELDS = ("id", "name", "source", "synonyms", "definitions", "parents", "xrefs", "alt_ids", "links", "origin")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while many small objects are made (a graph load is 3-4x faster)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def unknown_id_hint(concept_id: str, sources: Iterable[str], prefixes: set[str]) -> str:
    """The hint after "unknown concept id ...": what ids look like, or that no concept has this prefix."""
    listed = ", ".join(sorted(sources))
    if ":" not in concept_id:
        return f" (ids are CURIEs such as DOID:1612; sources: {listed})"
    if concept_id.split(":", 1)[0] not in prefixes:
        return f" (no concepts with prefix {concept_id.split(':', 1)[0]}; sources: {listed})"
    return ""


class DiseaseGraph:
    """Concepts keyed by CURIE with an is-a hierarchy (a DAG), alternative ids and equivalence links.

    Build one with :func:`medvl.knowledge.build_graph` or :func:`medvl.knowledge.default_graph`; save and load it
    with :meth:`save` / :meth:`load` (gzipped JSON).

    Args:
        concepts: the concepts; ids must be unique.
        aliases: alternative (obsolete, merged) id -> current id.
        summary: build record (counts per source, links, warnings).
        warnings: problems found while building, each naming its file and line.

    Raises:
        InputError: the is-a relation has a cycle (the message names the concepts and where they were read).
    """

    def __init__(
        self,
        concepts: Iterable[Concept],
        aliases: dict[str, str] | None = None,
        summary: dict[str, Any] | None = None,
        warnings: list[str] | None = None,
        *,
        checked: bool = False,
    ):
        self._concepts: dict[str, Concept] = {}
        for concept in concepts:
            if concept.id in self._concepts:
                first = self._concepts[concept.id].origin
                raise InputError(concept.origin or None, f"duplicate concept id {concept.id} (also at {first})")
            self._concepts[concept.id] = concept
        self.warnings: list[str] = list(warnings or [])
        self._aliases = {a: t for a, t in (aliases or {}).items() if a not in self._concepts and t in self._concepts}
        if not checked:  # a graph read back from its own fingerprinted index was checked when it was built
            self._drop_dangling_parents()
        self._children: dict[str, list[str]] = {}
        for concept in self._concepts.values():
            for parent in concept.parents:
                self._children.setdefault(parent, []).append(concept.id)
        if not checked:
            self._check_acyclic()
        self.summary: dict[str, Any] = dict(summary or {})
        self._search = None
        self._index: GraphIndex | None = None
        self._anc_cache: dict[str, dict[str, int]] = {}
        self._depth_cache: dict[str, int] = {}

    # ------------------------------------------------------------------ construction checks
    def _drop_dangling_parents(self) -> None:
        for concept in self._concepts.values():
            kept = []
            for parent in concept.parents:
                target = parent if parent in self._concepts else self._aliases.get(parent)
                if target is None:
                    self.warnings.append(
                        f"{concept.origin}: parent {parent} of {concept.id} is not in the graph; is_a edge dropped"
                    )
                elif target not in kept and target != concept.id:
                    kept.append(target)
            concept.parents = kept

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in self._concepts:
            if start in state:
                continue
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(self._concepts[start].parents))]
            state[start] = 1
            while stack:
                node, parents = stack[-1]
                nxt = next(parents, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    cycle = [n for n, _ in stack[[n for n, _ in stack].index(nxt):]] + [nxt]
                    where = ", ".join(f"{c} at {self._concepts[c].origin}" for c in dict.fromkeys(cycle))
                    raise InputError(
                        self._concepts[node].origin.rsplit(":", 1)[0] or None,
                        f"is_a cycle {' -> '.join(cycle)} ({where})",
                    )
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(self._concepts[nxt].parents)))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._concepts)

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts.values())

    def __contains__(self, concept_id: object) -> bool:
        return isinstance(concept_id, str) and (concept_id in self._concepts or concept_id in self._aliases)

    @property
    def ids(self) -> list[str]:
        return list(self._concepts)

    def resolve(self, concept_id: str) -> str:
        """The current id of ``concept_id`` (follows alternative/obsolete ids); InputError when unknown."""
        if concept_id in self._concepts:
            return concept_id
        if concept_id in self._aliases:
            return self._aliases[concept_id]
        raise InputError(None, f"unknown concept id {concept_id!r}{self._suggest(concept_id)}")

    def _suggest(self, concept_id: str) -> str:
        return unknown_id_hint(concept_id, self.sources(), {cid.split(":", 1)[0] for cid in self._concepts})

    def concept(self, concept_id: str) -> Concept:
        """The concept with this id (alternative ids resolve to the current concept)."""
        return self._concepts[self.resolve(concept_id)]

    def sources(self) -> dict[str, int]:
        """Number of concepts per source."""
        counts: dict[str, int] = {}
        for concept in self._concepts.values():
            counts[concept.source] = counts.get(concept.source, 0) + 1
        return counts

    def subgraph_ids(self, source: str) -> list[str]:
        return [c.id for c in self._concepts.values() if c.source == source]

    # ------------------------------------------------------------------ hierarchy
    def parents(self, concept_id: str) -> list[str]:
        return list(self.concept(concept_id).parents)

    def children(self, concept_id: str) -> list[str]:
        return list(self._children.get(self.resolve(concept_id), ()))

    def roots(self) -> list[str]:
        return [c.id for c in self._concepts.values() if not c.parents]

    def _ancestor_distances(self, concept_id: str) -> dict[str, int]:
        """Ancestor -> shortest is-a distance (the concept itself at 0)."""
        cid = self.resolve(concept_id)
        cached = self._anc_cache.get(cid)
        if cached is not None:
            return cached
        dist = {cid: 0}
        queue = deque([cid])
        while queue:
            node = queue.popleft()
            for parent in self._concepts[node].parents:
                if parent not in dist:
                    dist[parent] = dist[node] + 1
                    queue.append(parent)
        if len(self._anc_cache) < 200_000:
            self._anc_cache[cid] = dist
        return dist

    def ancestors(self, concept_id: str) -> list[str]:
        """All ancestors, nearest first (breadth-first over is-a), without the concept itself."""
        dist = self._ancestor_distances(concept_id)
        return [a for a, _ in sorted(dist.items(), key=lambda kv: kv[1]) if dist[a] > 0]

    def descendants(self, concept_id: str) -> list[str]:
        """All descendants, nearest first, without the concept itself."""
        start = self.resolve(concept_id)
        seen = {start}
        order = []
        queue = deque([start])
        while queue:
            for child in self._children.get(queue.popleft(), ()):
                if child not in seen:
                    seen.add(child)
                    order.append(child)
                    queue.append(child)
        return order

    def is_ancestor(self, ancestor: str, concept_id: str) -> bool:
        a = self.resolve(ancestor)
        return a != self.resolve(concept_id) and a in self._ancestor_distances(concept_id)

    def depth(self, concept_id: str) -> int:
        """Length of the longest is-a path up to a root."""
        cid = self.resolve(concept_id)
        if cid not in self._depth_cache:
            # parents are resolved before children: walk up iteratively, no recursion limit on deep trees
            order = [cid]
            stack = [cid]
            while stack:
                for parent in self._concepts[stack.pop()].parents:
                    if parent not in self._depth_cache:
                        order.append(parent)
                        stack.append(parent)
            for node in reversed(order):
                parents = self._concepts[node].parents
                self._depth_cache[node] = 1 + max((self._depth_cache.get(p, 0) for p in parents), default=-1)
        return self._depth_cache[cid]

    def lowest_common_ancestor(self, a: str, b: str) -> str | None:
        """The common ancestor (or self) closest to both concepts; ties go to the deepest. ``None`` when unrelated."""
        da, db = self._ancestor_distances(a), self._ancestor_distances(b)
        common = set(da) & set(db)
        if not common:
            return None
        return min(common, key=lambda x: (da[x] + db[x], -self.depth(x), x))

    def distance(self, a: str, b: str) -> int | None:
        """Is-a distance: edges on the shortest path through a common ancestor; ``None`` when in different trees."""
        da, db = self._ancestor_distances(a), self._ancestor_distances(b)
        common = set(da) & set(db)
        return min((da[x] + db[x] for x in common), default=None)

    def primary_path(self, concept_id: str) -> list[str]:
        """The chain of first parents from the concept up to its root (concept first)."""
        path = [self.resolve(concept_id)]
        while self._concepts[path[-1]].parents:
            path.append(self._concepts[path[-1]].parents[0])
        return path

    # ------------------------------------------------------------------ links
    def links(self, concept_id: str) -> list[str]:
        """Equivalent concepts in other sources (agreeing NCI/UMLS/ICD-10-CM cross-references)."""
        return list(self.concept(concept_id).links)

    # ------------------------------------------------------------------ search
    def search(self, text: str, k: int = 10, fuzzy_cutoff: float = 60.0) -> list:
        """Ranked :class:`~medvl.knowledge.search.SearchHit` list: id, exact (normalised) matches, then fuzzy."""
        if self._search is None:
            if self._index is not None:
                self._search = self._index
            else:
                from medvl.knowledge.search import SearchIndex

                self._search = SearchIndex(self)
        return self._search.search(text, k=k, fuzzy_cutoff=fuzzy_cutoff)

    @property
    def index(self) -> GraphIndex | None:
        """The on-disk index this graph was read from or stored in (``None`` for a graph built ad hoc)."""
        return self._index

    def attach_index(self, index: GraphIndex) -> None:
        """Answer :meth:`search` from ``index`` (the on-disk index of this graph, same fingerprint)."""
        self._index = index
        self._search = None

    def __getstate__(self) -> dict[str, Any]:  # the index holds a database connection: reopen it, do not copy it
        state = dict(self.__dict__)
        state["_search"] = None
        state["_index_path"] = None if self._index is None else str(self._index.path)
        state["_index"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        path = state.pop("_index_path", None)
        self.__dict__.update(state)
        if path is not None and Path(path).is_file():
            from medvl.knowledge.store import GraphIndex

            self._index = GraphIndex.open(path)

    # ------------------------------------------------------------------ KEEP
    def groups(self, ids: Sequence[str] | None = None, *, source: str | None = None, config: Any = None
               ) -> list[SemanticGroup]:
        """KEEP semantic groups (name, synonyms, definitions, hierarchy captions) for ``ids`` or every concept.

        Args:
            ids: concepts to describe; all (of ``source`` when given) when ``None``.
            source: restrict the default set to one source (``DOID``).
            config: a :class:`~medvl.knowledge.groups.GroupConfig` (scopes, caption depth).
        """
        from medvl.knowledge.groups import semantic_group

        if ids is None:
            ids = [c.id for c in self._concepts.values() if source is None or c.source == source]
        return [semantic_group(self, cid, config) for cid in ids]

    def relatives_mask(self, ids: Sequence[str]) -> np.ndarray:
        """Boolean ``[N, N]`` matrix, True where ``ids[i]`` and ``ids[j]`` are the same concept or one is an ancestor
        of the other: pairs that must not serve as each other's negatives."""
        import numpy as np

        resolved = [self.resolve(i) for i in ids]
        rows: dict[str, list[int]] = {}
        for j, cid in enumerate(resolved):
            rows.setdefault(cid, []).append(j)
        mask = np.zeros((len(resolved), len(resolved)), dtype=bool)
        for i, cid in enumerate(resolved):  # each row's ancestors (itself included) among the ids: O(N x depth)
            for ancestor in self._ancestor_distances(cid):
                for j in rows.get(ancestor, ()):
                    mask[i, j] = mask[j, i] = True
        return mask

    def prompts(self, ids: Sequence[str], templates: str | Sequence[str] = "pathology",
                scopes: tuple[str, ...] = ("EXACT",)) -> dict[str, list[str]]:
        """Zero-shot prompts: each concept's name and synonyms through every template, deduplicated.

        Args:
            ids: concept ids (the classes).
            templates: template strings with ``{}`` (or ``{name}``), a template set name (``pathology``,
                ``radiology``) or a path to a template file with one template per line.
            scopes: synonym scopes to use besides the name.
        """
        from medvl.knowledge.templates import load_templates, render_prompts

        return {self.resolve(i): render_prompts(self.concept(i).names(scopes), load_templates(templates)) for i in ids}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "summary": self.summary,
            "warnings": self.warnings,
            "aliases": self._aliases,
            "concepts": [c.to_dict() for c in self._concepts.values()],
        }

    def to_rows(self) -> dict[str, Any]:
        """Compact form for the on-disk index: one list per concept (fields in ``ROW_FIELDS`` order)."""
        rows = [[c.id, c.name, c.source, [[s.text, s.scope] for s in c.synonyms], c.definitions, c.parents, c.xrefs,
                 c.alt_ids, c.links, c.origin] for c in self._concepts.values()]
        return {"fields": list(ROW_FIELDS), "concepts": rows, "aliases": self._aliases, "summary": self.summary,
                "warnings": self.warnings}

    @classmethod
    def from_rows(cls, data: dict[str, Any]) -> DiseaseGraph:
        """Inverse of :meth:`to_rows` for a graph that was checked when it was built (no cycle check again)."""
        if data.get("fields") != list(ROW_FIELDS):
            raise ValueError(f"graph rows have fields {data.get('fields')}, expected {list(ROW_FIELDS)}")
        with paused_gc():
            concepts = [Concept(r[0], r[1], [Synonym(t, s) for t, s in r[3]], r[4], r[5], r[6], r[2], r[7], r[8], r[9])
                        for r in data["concepts"]]
            return cls(concepts, data["aliases"], data["summary"], data["warnings"], checked=True)

    def save(self, path: str | Path) -> Path:
        """Write the graph as gzipped JSON (``.json.gz``) or plain JSON (``.json``), atomically."""
        path = Path(path)
        payload = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        with atomic_path(path) as tmp:
            if path.suffix == ".gz":
                with gzip.GzipFile(tmp, "wb", compresslevel=6, mtime=0) as fh:
                    fh.write(payload)
            else:
                tmp.write_bytes(payload)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DiseaseGraph:
        """Read a graph written by :meth:`save`; a clear error when the file is not one."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "graph file not found (build one with: medvl ontology build --out DIR)")
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            with paused_gc():
                data = json.loads(raw)
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(path, f"not a medvl graph file ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(path, f"not a medvl graph file (expected format {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise InputError(path, f"graph format version {data.get('version')} is not {FORMAT_VERSION}; rebuild it")
        try:
            with paused_gc():
                concepts = [Concept.from_dict(c) for c in data["concepts"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"corrupt concept record ({exc})") from None
        return cls(concepts, data.get("aliases"), data.get("summary"), data.get("warnings"))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.sources().items()))
        return f"DiseaseGraph({len(self)} concepts: {counts})"

