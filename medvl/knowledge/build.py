"""Build a :class:`DiseaseGraph` from ontology sources, link them by cross-references, and cache the result.

Sources are named in a table (``SOURCES``): the bundled Disease Ontology subsets, OncoTree and ICD-10-CM. Any other
``.obo`` or OncoTree ``.json`` file can be given by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass as plain_dataclass
from pathlib import Path
from typing import Any

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError, InputError
from medvl.knowledge.concept import Concept, Synonym
from medvl.knowledge.graph import FORMAT_VERSION, DiseaseGraph
from medvl.log import get_logger
from medvl.resources import bundled, ontology_dir, source_checkout

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


def cache_key(config: BuildConfig) -> str:
    """Changes when the config, the source files, the ICD package version or the graph format change."""
    from medvl import __version__

    parts: list[Any] = [FORMAT_VERSION, BUILD_REVISION, __version__, config.to_dict()]
    for source in config.sources:
        reader, path = resolve_source(source)
        if path is not None:
            stat = path.stat()
            parts.append([str(path), stat.st_size, stat.st_mtime_ns])
        elif reader == "icd10cm":
            from importlib.metadata import PackageNotFoundError, version

            try:
                parts.append(version("simple-icd-10-cm"))
            except PackageNotFoundError:
                parts.append("icd-unknown")
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_dirs() -> list[Path]:
    """Where cached graphs go, in order of preference: ``$MEDVL_GRAPH_CACHE``; ``built/`` beside the ontology sources
    in a source checkout (an installed package's folder is left as installed); the user cache."""
    dirs = []
    if os.environ.get("MEDVL_GRAPH_CACHE"):
        dirs.append(Path(os.environ["MEDVL_GRAPH_CACHE"]))
    if source_checkout() is not None:
        dirs.append(ontology_dir() / "built")
    from platformdirs import user_cache_dir

    dirs.append(Path(user_cache_dir("medvl", appauthor=False)) / "graph")
    return dirs


def cached_graph(config: BuildConfig | None = None, rebuild: bool = False) -> DiseaseGraph:
    """Load the graph for ``config`` from memory or a cache file, building (and caching) it when absent."""
    config = config or BuildConfig()
    key = cache_key(config)
    if not rebuild and key in _MEMORY:
        return _MEMORY[key]
    name = f"graph-{key}.json.gz"
    graph = None
    if not rebuild:
        for folder in cache_dirs():
            if (folder / name).is_file():
                try:
                    graph = DiseaseGraph.load(folder / name)
                    break
                except InputError as exc:  # a damaged cache is rebuilt, not fatal
                    log.warning("ignoring cached graph: %s", exc)
    if graph is None:
        graph = build_graph(config)
        _write_cache(graph, name)
    _MEMORY[key] = graph
    return graph


def store_cached_graph(graph: DiseaseGraph, config: BuildConfig) -> None:
    """Make ``graph`` (just built from ``config``) the cached graph of that config: written to the cache file, and the
    in-memory copies dropped so the next :func:`cached_graph` reads the new one."""
    _write_cache(graph, f"graph-{cache_key(config)}.json.gz")
    _MEMORY.clear()


def _write_cache(graph: DiseaseGraph, name: str) -> None:
    for folder in cache_dirs():
        try:
            graph.save(folder / name)
            return
        except OSError as exc:
            log.info("cannot cache the graph in %s (%s)", folder, exc)


def default_graph() -> DiseaseGraph:
    """The graph of every bundled ontology plus ICD-10-CM, built once and cached (memory and disk)."""
    return cached_graph(BuildConfig())
