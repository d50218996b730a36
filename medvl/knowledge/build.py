"""Build a :class:`DiseaseGraph` from ontology sources, link them by cross-references, and cache the result.

Sources are named in a table (``SOURCES``): the bundled Disease Ontology subsets, OncoTree and ICD-10-CM. Any other
``.obo`` or OncoTree ``.json`` file can be given by path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass as plain_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError, InputError
from medvl.knowledge.concept import Concept, Synonym
from medvl.knowledge.graph import FORMAT_VERSION, DiseaseGraph
from medvl.log import get_logger
from medvl.resources import bundled, ontology_dir, source_checkout

if TYPE_CHECKING:
    from medvl.knowledge.store import GraphIndex

log = get_logger(__name__)

#: the hub ontology every other source links into
HUB = "DOID"
#: bump when a reader changes what it produces (invalidates cached graphs)
BUILD_REVISION = 1
#: vocabularies whose agreeing codes link a concept to a hub concept
LINK_VOCABS = ("NCI", "UMLS", "ICD10CM")


@plain_dataclass(frozen=True)
class SourceSpec:
    """A named ontology source: which reader, and which bundled file (if any)."""

    reader: str
    bundled: str | None = None
    description: str = ""


SOURCES: dict[str, SourceSpec] = {
    "doid_ncit": SourceSpec("obo", "doid_ncit", "Disease Ontology, NCI thesaurus subset (4,750 terms)"),
    "doid_cancer_slim": SourceSpec("obo", "doid_cancer_slim", "Disease Ontology cancer slim (729 terms)"),
    "doid_top_nodes": SourceSpec("obo", "doid_top_nodes", "Disease Ontology top nodes of the cancer slim"),
    "oncotree": SourceSpec("oncotree", "oncotree", "OncoTree tumour types (2025-10-03)"),
    "icd10cm": SourceSpec("icd10cm", None, "ICD-10-CM from the simple-icd-10-cm package"),
}
DEFAULT_SOURCES = ["doid_ncit", "doid_cancer_slim", "doid_top_nodes", "oncotree", "icd10cm"]


@dataclass
class BuildConfig(Config):
    """What to build.

    Attributes:
        sources: source names from ``SOURCES`` or paths to ``.obo`` / OncoTree ``.json`` files, merged in order.
        icd_extensions: include ICD-10-CM 7th-character extension codes (encounter types).
        icd_chapters: restrict ICD-10-CM to these chapter numbers (``["2"]``: neoplasms); all when empty.
        strict: turn build warnings (dangling parents, conflicting duplicate names, empty synonyms) into errors.
    """

    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    icd_extensions: bool = False
    icd_chapters: list[str] = field(default_factory=list)
    strict: bool = False

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("BuildConfig.sources: name at least one source")
        for src in self.sources:
            if src not in SOURCES and not src.endswith((".obo", ".json")):
                raise ConfigError(
                    f"BuildConfig.sources: unknown source {src!r} (known: {', '.join(SOURCES)}; "
                    "or a path to an .obo or OncoTree .json file)"
                )


# ---------------------------------------------------------------------- readers
@plain_dataclass
class SourceResult:
    concepts: list[Concept]
    aliases: dict[str, str]
    warnings: list[str]
    label: str


def _read_obo(path: Path, config: BuildConfig) -> SourceResult:
    from medvl.knowledge.obo import read_obo

    obo = read_obo(path)
    aliases = dict(obo.replaced)
    for concept in obo.concepts:
        for alt in concept.alt_ids:
            aliases.setdefault(alt, concept.id)
    return SourceResult(obo.concepts, aliases, obo.warnings, str(path))


def _read_oncotree(path: Path, config: BuildConfig) -> SourceResult:
    from medvl.knowledge.oncotree import read_oncotree

    return SourceResult(read_oncotree(path), {}, [], str(path))


def _read_icd(path: Path | None, config: BuildConfig) -> SourceResult:
    from medvl.knowledge.icd10cm import read_icd10cm

    concepts = read_icd10cm(config.icd_extensions, config.icd_chapters or None)
    for concept in concepts:
        concept.xrefs["ICD10CM"] = [concept.id.split(":", 1)[1]]
    return SourceResult(concepts, {}, [], "simple_icd_10_cm")


READERS: dict[str, Callable[[Path | None, BuildConfig], SourceResult]] = {
    "obo": _read_obo,
    "oncotree": _read_oncotree,
    "icd10cm": _read_icd,
}


def resolve_source(source: str) -> tuple[str, Path | None]:
    """Source name or path -> (reader name, file path or None)."""
    if source in SOURCES:
        spec = SOURCES[source]
        return spec.reader, bundled(spec.bundled) if spec.bundled else None
    path = Path(source)
    if not path.is_file():
        raise InputError(path, "ontology source file not found")
    return ("obo" if path.suffix == ".obo" else "oncotree"), path


# ---------------------------------------------------------------------- merging and linking
def _merge(into: Concept, other: Concept, warnings: list[str]) -> None:
    """Union of two records of the same id read from different files."""
    if other.name != into.name:
        warnings.append(
            f"{other.origin}: {other.id} is named {other.name!r} but {into.origin} names it {into.name!r}; "
            "keeping the first name"
        )
        if Synonym(other.name, "EXACT") not in into.synonyms:
            into.synonyms.append(Synonym(other.name, "EXACT"))
    for syn in other.synonyms:
        if syn not in into.synonyms and syn.text != into.name:
            into.synonyms.append(syn)
    for attr in ("definitions", "parents", "alt_ids"):
        target = getattr(into, attr)
        target.extend(v for v in getattr(other, attr) if v not in target)
    for vocab, codes in other.xrefs.items():
        have = into.xrefs.setdefault(vocab, [])
        have.extend(c for c in codes if c not in have)


def _hub_index(concepts: dict[str, Concept], hub: str) -> dict[tuple[str, str], list[str]]:
    index: dict[tuple[str, str], list[str]] = {}
    for concept in concepts.values():
        if concept.source == hub:
            for vocab in LINK_VOCABS:
                for code in concept.xrefs.get(vocab, ()):
                    index.setdefault((vocab, code), []).append(concept.id)
    return index


def _matches(concept: Concept, index: dict[tuple[str, str], list[str]]) -> list[str]:
    found: list[str] = []
    for vocab in LINK_VOCABS:
        for code in concept.xrefs.get(vocab, ()):
            found.extend(t for t in index.get((vocab, code), ()) if t not in found)
    return found


def link_concepts(concepts: dict[str, Concept], hub: str = HUB) -> dict[str, dict[str, int]]:
    """Link every non-hub concept to hub concepts sharing an NCI, UMLS or ICD-10-CM code (both directions).

    Returns:
        Per source: ``concepts``, ``concepts_linked`` (with at least one link) and ``links`` (pairs).
    """
    index = _hub_index(concepts, hub)
    stats: dict[str, dict[str, int]] = {}
    for concept in concepts.values():
        if concept.source == hub:
            continue
        found = _matches(concept, index)
        entry = stats.setdefault(concept.source, {"concepts": 0, "concepts_linked": 0, "links": 0})
        entry["concepts"] += 1
        entry["concepts_linked"] += bool(found)
        entry["links"] += len(found)
        for target in found:
            if target not in concept.links:
                concept.links.append(target)
            if concept.id not in concepts[target].links:
                concepts[target].links.append(concept.id)
    return stats


def build_graph(config: BuildConfig | None = None, *, sources: list[str] | None = None) -> DiseaseGraph:
    """Read, merge, check and link the sources into one graph.

    Args:
        config: what to build (default: every bundled source plus ICD-10-CM).
        sources: shortcut for ``BuildConfig(sources=...)``.

    Raises:
        InputError: a source is malformed (naming file and line), the hierarchy has a cycle, or (``strict``)
            there were warnings.
    """
    import resource

    config = config or BuildConfig(sources=sources) if sources else config or BuildConfig()
    start = time.perf_counter()
    concepts: dict[str, Concept] = {}
    aliases: dict[str, str] = {}
    warnings: list[str] = []
    per_source: dict[str, dict[str, Any]] = {}
    for source in config.sources:
        reader, path = resolve_source(source)
        result = READERS[reader](path, config)
        merged = 0
        for concept in result.concepts:
            if concept.id in concepts:
                _merge(concepts[concept.id], concept, warnings)
                merged += 1
            else:
                concepts[concept.id] = concept
        aliases.update({a: t for a, t in result.aliases.items() if a not in aliases})
        warnings.extend(result.warnings)
        per_source[source] = {"file": result.label, "concepts": len(result.concepts), "merged_with_earlier": merged}
    link_stats = link_concepts(concepts)
    graph = DiseaseGraph(concepts.values(), aliases, warnings=warnings)
    if config.strict and graph.warnings:
        raise InputError(None, f"{len(graph.warnings)} build warning(s) in strict mode; first: {graph.warnings[0]}")
    for message in graph.warnings[:10]:
        log.warning(message)
    if len(graph.warnings) > 10:
        log.warning("... and %d more build warnings", len(graph.warnings) - 10)
    graph.summary = {
        "concepts": len(graph),
        "by_source": graph.sources(),
        "is_a_edges": sum(len(c.parents) for c in graph),
        "aliases": len(graph._aliases),
        "sources": per_source,
        "links": link_stats,
        "warnings": len(graph.warnings),
        "build_seconds": round(time.perf_counter() - start, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "config": config.to_dict(),
    }
    return graph


# ---------------------------------------------------------------------- cache
_MEMORY: dict[str, DiseaseGraph] = {}
#: modules whose code shapes the graph or its index: their source files are part of the fingerprint
CODE_MODULES = ("build", "concept", "graph", "obo", "oncotree", "icd10cm", "text", "search", "fuzzy", "postings",
                "arrayfile", "tagger", "negation", "store")


def cache_dirs() -> list[Path]:
    """Where cached graph indexes go, in order of preference: ``$MEDVL_GRAPH_CACHE``; ``built/`` beside the ontology
    sources in a source checkout (an installed package's folder is left as installed); the user cache."""
    dirs = []
    if os.environ.get("MEDVL_GRAPH_CACHE"):
        dirs.append(Path(os.environ["MEDVL_GRAPH_CACHE"]))
    if source_checkout() is not None:
        dirs.append(ontology_dir() / "built")
    from platformdirs import user_cache_dir

    dirs.append(Path(user_cache_dir("medvl", appauthor=False)) / "graph")
    return dirs


def _memo():
    from medvl.knowledge.fingerprint import MEMO_NAME, DigestMemo

    for folder in cache_dirs():
        if folder.is_dir() and os.access(folder, os.W_OK):
            return DigestMemo(folder / MEMO_NAME)
    return DigestMemo(None)


def _code_parts(memo) -> list[Any]:
    from medvl import __version__
    from medvl.knowledge.store import INDEX_VERSION

    here = Path(__file__).resolve().parent
    return [FORMAT_VERSION, INDEX_VERSION, BUILD_REVISION, __version__,
            [[name, memo.digest(here / f"{name}.py")] for name in CODE_MODULES]]


def graph_fingerprint(config: BuildConfig) -> str:
    """Content fingerprint of the graph ``config`` builds: the build config, the SHA-256 of every source file (and of
    the ICD-10-CM package files), and the code that reads them and builds the index. Any change gives a new index."""
    from medvl.knowledge.fingerprint import combine, package_files

    memo = _memo()
    parts = [*_code_parts(memo), config.to_dict()]
    for source in config.sources:
        reader, path = resolve_source(source)
        if path is not None:
            parts.append([source, memo.digest(path)])
        elif reader == "icd10cm":
            root, files = package_files("simple_icd_10_cm")
            parts.append([source, [[str(f.relative_to(root)), memo.digest(f)] for f in files] or "missing"])
    memo.save()
    return combine(parts)


def file_fingerprint(path: Path) -> str:
    """Fingerprint of the index of a graph file written by :meth:`DiseaseGraph.save` (its bytes and the code)."""
    from medvl.knowledge.fingerprint import combine

    memo = _memo()
    parts = ["file", *_code_parts(memo), memo.digest(path)]
    memo.save()
    return combine(parts)


def _index_name(fingerprint: str) -> str:
    return f"graph-{fingerprint}.sqlite"


def find_index(fingerprint: str) -> GraphIndex | None:
    """The cached index with this fingerprint, if one exists (a damaged one is skipped with a warning)."""
    from medvl.knowledge.store import GraphIndex

    for folder in cache_dirs():
        path = folder / _index_name(fingerprint)
        if path.is_file():
            try:
                index = GraphIndex.open(path)
            except InputError as exc:
                log.warning("ignoring cached graph index: %s", exc)
                continue
            if index.fingerprint == fingerprint:
                return index
            index.close()
    return None


def store_index(graph: DiseaseGraph, fingerprint: str) -> GraphIndex:
    """Write the index of ``graph`` to the first writable cache folder and open it (in memory when none is).

    Indexes in that folder written by other code (they can never match a fingerprint again) are removed.
    """
    from medvl.knowledge.fingerprint import combine
    from medvl.knowledge.store import GraphIndex, memory_index, write_index

    code = combine(_code_parts(_memo()))
    for folder in cache_dirs():
        try:
            index = GraphIndex.open(write_index(graph, folder / _index_name(fingerprint), fingerprint, code=code))
        except OSError as exc:
            log.info("cannot cache the graph index in %s (%s)", folder, exc)
            continue
        _remove_stale(folder, index.path, code)
        return index
    log.warning("no writable graph cache folder (set MEDVL_GRAPH_CACHE); the index is rebuilt in every process")
    return memory_index(graph, fingerprint)


#: an index of other code is removed only when it has not been written for this long (two versions sharing a cache
#: folder do not delete each other's fresh indexes)
STALE_AFTER_S = 3600.0


def _remove_stale(folder: Path, keep: Path, code: str) -> None:
    from medvl.knowledge.store import GraphIndex

    now = time.time()
    for path in folder.glob("graph-*.sqlite"):
        if path == keep or now - path.stat().st_mtime < STALE_AFTER_S:
            continue
        try:
            index = GraphIndex.open(path)
            stale = index.meta.get("code") != code
            index.close()
        except InputError:
            stale = True
        if stale:
            path.unlink(missing_ok=True)
            path.with_suffix(".arrays").unlink(missing_ok=True)
    for orphan in folder.glob("graph-*.arrays"):  # arrays whose index was never written (an interrupted build)
        if not orphan.with_suffix(".sqlite").exists() and now - orphan.stat().st_mtime >= STALE_AFTER_S:
            orphan.unlink(missing_ok=True)
    for legacy in folder.glob("graph-*.json.gz"):  # caches of the gzipped-JSON format, no longer read
        legacy.unlink(missing_ok=True)


def cached_graph(config: BuildConfig | None = None, rebuild: bool = False) -> DiseaseGraph:
    """The graph for ``config``: from memory, from its cached index (same fingerprint), or built and then cached.

    The graph's :meth:`~DiseaseGraph.search` answers from the index.
    """
    config = config or BuildConfig()
    fingerprint = graph_fingerprint(config)
    if not rebuild and fingerprint in _MEMORY:
        return _MEMORY[fingerprint]
    index = None if rebuild else find_index(fingerprint)
    if index is not None:
        try:
            graph = index.graph()
        except InputError as exc:  # a damaged cache is rebuilt, not fatal
            log.warning("ignoring cached graph index: %s", exc)
            index = None
    if index is None:
        graph = build_graph(config)
        graph.attach_index(store_index(graph, fingerprint))
    _MEMORY[fingerprint] = graph
    return graph


def cached_index(config: BuildConfig | None = None) -> GraphIndex:
    """The on-disk index for ``config`` without reading the graph into memory (built and cached when absent)."""
    config = config or BuildConfig()
    fingerprint = graph_fingerprint(config)
    if fingerprint in _MEMORY and _MEMORY[fingerprint].index is not None:
        return _MEMORY[fingerprint].index
    index = find_index(fingerprint)
    if index is None:
        index = cached_graph(config).index
    return index


def index_for_file(path: str | Path) -> GraphIndex:
    """The index of a graph file from ``medvl ontology build`` (keyed by the file's bytes; built on first use)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "graph file not found (build one with: medvl ontology build --out DIR)")
    fingerprint = file_fingerprint(path)
    return find_index(fingerprint) or store_index(DiseaseGraph.load(path), fingerprint)


def default_graph() -> DiseaseGraph:
    """The graph of every bundled ontology plus ICD-10-CM, built once and cached (memory and disk)."""
    return cached_graph(BuildConfig())
