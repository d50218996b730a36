"""The on-disk graph index: one SQLite file per graph fingerprint that answers look-ups without building the graph.

``medvl ontology search|show|prompts|tag`` open it read-only and query it; :func:`medvl.knowledge.default_graph` reads
the whole graph back from it (compact JSON rows, no gzip, collector paused, no second cycle check: 3-5x faster than the
gzipped JSON). Tables:

* ``meta(key, value)``: format, version, fingerprint, build summary, sources and id prefixes;
* ``concepts(id, name, source, record, children)``: one JSON record per concept (``Concept.to_dict``);
* ``aliases(alias, target)``: alternative and obsolete ids;
* ``labels(key, pos, concept, label)``: normalised label -> concepts, best first (the exact tier of the search);
* ``blobs(name, dtype, shape, data)``: the graph rows and the tagger.

The fuzzy matcher's arrays and the label keys sit beside it in ``graph-<fingerprint>.arrays``
(:mod:`medvl.knowledge.arrayfile`), memory-mapped when a search first needs them.

SQLite's FTS5 is not used: the ranking must stay rapidfuzz's WRatio over the normalised labels (a test compares it with
the full scan), and FTS5's tokenisers fold text differently from :func:`~medvl.knowledge.text.normalise`; the word and
trigram postings the matcher needs are stored as arrays instead.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from medvl.atomic import atomic_path
from medvl.errors import InputError
from medvl.knowledge.concept import Concept
from medvl.knowledge.graph import DiseaseGraph, paused_gc, unknown_id_hint
from medvl.knowledge.search import Match, SearchHit, label_rows, ranked_search

if TYPE_CHECKING:
    from medvl.knowledge.fuzzy import FuzzyIndex
    from medvl.knowledge.tagger import ConceptTagger

INDEX_FORMAT = "medvl-graph-index"
#: bump when the tables or the stored forms change (a stale index is then rebuilt)
INDEX_VERSION = 2

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE concepts (id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, record TEXT NOT NULL,
                       children TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE aliases (alias TEXT PRIMARY KEY, target TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE labels (key TEXT NOT NULL, pos INTEGER NOT NULL, concept TEXT NOT NULL, label TEXT NOT NULL,
                     PRIMARY KEY (key, pos)) WITHOUT ROWID;
CREATE TABLE blobs (name TEXT PRIMARY KEY, dtype TEXT, shape TEXT, data BLOB NOT NULL) WITHOUT ROWID;
"""


def arrays_path(index_path: Path) -> Path:
    """The memory-mapped array file that goes with an index file (``graph-<fp>.arrays`` beside ``.sqlite``)."""
    return index_path.with_suffix(".arrays")


def write_index(graph: DiseaseGraph, path: str | Path, fingerprint: str, code: str = "") -> Path:
    """Write the index of ``graph`` to ``path`` and its fuzzy matcher's arrays beside it, each atomically (the
    arrays first, so an index file always has its arrays).

    Args:
        graph: the graph.
        path: the index file.
        fingerprint: the graph's content fingerprint (the index answers for this fingerprint only).
        code: fingerprint of the code that wrote it (indexes of other code are removed from cache folders).
    """
    from medvl.knowledge.arrayfile import pack_strings, write_arrays
    from medvl.knowledge.fuzzy import FuzzyIndex

    path = Path(path)
    rows = label_rows(graph)
    arrays, fuzzy_meta = FuzzyIndex.build(list(rows)).to_arrays()
    keys = pack_strings(list(rows))
    sidecar = write_arrays(arrays_path(path), {**arrays, "keys_utf8": keys["utf8"], "keys_offsets": keys["offsets"]})
    fuzzy_meta["arrays"] = {"file": sidecar.name, "bytes": sidecar.stat().st_size}
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(tmp)
        try:
            fill_index(conn, graph, fingerprint, code, rows, fuzzy_meta)
        finally:
            conn.close()
    return path


def fill_index(conn: sqlite3.Connection, graph: DiseaseGraph, fingerprint: str, code: str,
               rows: dict[str, list[tuple[str, str]]], fuzzy_meta: dict[str, Any]) -> None:
    """Create the tables in an empty database and store ``graph`` in them (the fuzzy arrays live beside it)."""
    from medvl.knowledge.tagger import ConceptTagger

    # large pages: the graph and tagger blobs (22 MB) read back faster
    conn.executescript("PRAGMA page_size=65536; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
    meta = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "fingerprint": fingerprint, "code": code,
        "summary": graph.summary, "sources": graph.sources(), "concepts": len(graph), "fuzzy": fuzzy_meta,
        "prefixes": sorted({c.id.split(":", 1)[0] for c in graph}),
    }
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    conn.executemany("INSERT INTO concepts VALUES (?, ?, ?, ?, ?)", (
        (c.id, c.name, c.source, json.dumps(c.to_dict(), ensure_ascii=False), json.dumps(graph.children(c.id)))
        for c in graph))
    conn.executemany("INSERT INTO aliases VALUES (?, ?)", graph._aliases.items())
    conn.executemany("INSERT INTO labels VALUES (?, ?, ?, ?)",
                     ((key, pos, cid, label) for key, found in rows.items() for pos, (cid, label) in enumerate(found)))
    blobs = [("graph", None, None, json.dumps(graph.to_rows(), ensure_ascii=False).encode("utf-8")),
             ("tagger", None, None, json.dumps(ConceptTagger.from_graph(graph).to_dict()).encode("utf-8"))]
    conn.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)", blobs)
    conn.commit()


class GraphIndex:
    """Read-only look-ups on an index file (see the module docs); thread-safe.

    Open with :meth:`open`, or get the one for a build config or a graph file from
    :func:`medvl.knowledge.build.cached_index` / :func:`~medvl.knowledge.build.index_for_file`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()
        self.meta = {k: json.loads(v) for k, v in self._rows("SELECT key, value FROM meta")}
        self._matcher: FuzzyIndex | None = None

    @classmethod
    def open(cls, path: str | Path) -> GraphIndex:
        """Open an index file read-only; InputError when it is not an index of this format version."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "graph index not found")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            index = cls(conn, path)
        except sqlite3.DatabaseError as exc:
            raise InputError(path, f"not a medvl graph index ({exc})") from None
        if index.meta.get("format") != INDEX_FORMAT or index.meta.get("version") != INDEX_VERSION:
            conn.close()
            raise InputError(path, f"not a medvl graph index of version {INDEX_VERSION}; it is rebuilt when needed")
        sidecar = arrays_path(path)
        want = index.meta["fuzzy"]["arrays"]["bytes"]
        if not sidecar.is_file() or sidecar.stat().st_size != want:
            conn.close()
            raise InputError(path, f"damaged graph index: {sidecar.name} is missing or not {want} bytes")
        return index

    def close(self) -> None:
        self._conn.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(self.path, f"damaged graph index ({exc}); delete it to rebuild") from None

    def _blob(self, name: str) -> bytes:
        found = self._rows("SELECT data FROM blobs WHERE name = ?", (name,))
        if not found:
            raise InputError(self.path, f"graph index lacks {name!r}; delete it to rebuild")
        return found[0][0]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta["summary"]

    def __len__(self) -> int:
        return int(self.meta["concepts"])

    # ------------------------------------------------------------------ label table (medvl.knowledge.search)
    def resolve_id(self, concept_id: str) -> str | None:
        if self._rows("SELECT 1 FROM concepts WHERE id = ?", (concept_id,)):
            return concept_id
        found = self._rows("SELECT target FROM aliases WHERE alias = ?", (concept_id,))
        return found[0][0] if found else None

    def exact(self, key: str) -> Sequence[tuple[str, str]]:
        return self._rows("SELECT concept, label FROM labels WHERE key = ? ORDER BY pos", (key,))

    def exact_many(self, keys: Sequence[str]) -> dict[str, Sequence[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        keys = list(dict.fromkeys(keys))
        for at in range(0, len(keys), 500):  # well under SQLite's limit on bound parameters
            chunk = keys[at:at + 500]
            marks = ",".join("?" * len(chunk))
            for key, cid, label in self._rows(
                    f"SELECT key, concept, label FROM labels WHERE key IN ({marks}) ORDER BY key, pos", chunk):
                out.setdefault(key, []).append((cid, label))
        return out

    def name(self, concept_id: str) -> str:
        return self._rows("SELECT name FROM concepts WHERE id = ?", (concept_id,))[0][0]

    def fuzzy(self, key: str, limit: int, cutoff: float) -> list[Match]:
        return self.matcher.extract(key, limit, cutoff)

    @property
    def matcher(self) -> FuzzyIndex:
        """The fuzzy matcher over its memory-mapped arrays (opened on first use)."""
        if self._matcher is None:
            from medvl.knowledge.arrayfile import PackedStrings, read_arrays
            from medvl.knowledge.fuzzy import ARRAYS, FuzzyIndex

            arrays = read_arrays(arrays_path(self.path))
            missing = [a for a in (*ARRAYS, "keys_utf8", "keys_offsets") if a not in arrays]
            if missing:
                raise InputError(self.path, f"graph index lacks the arrays {missing}; delete it to rebuild")
            keys = PackedStrings(arrays["keys_utf8"], arrays["keys_offsets"])
            self._matcher = FuzzyIndex.from_arrays(keys, arrays, self.meta["fuzzy"])
        return self._matcher

    def search(self, text: str, k: int = 10, fuzzy_cutoff: float = 60.0) -> list[SearchHit]:
        """Same ranking as :meth:`DiseaseGraph.search`."""
        return ranked_search(self, text, k, fuzzy_cutoff)

    # ------------------------------------------------------------------ concepts
    def resolve(self, concept_id: str) -> str:
        """The current id of ``concept_id``; InputError (with the graph's hint) when unknown."""
        found = self.resolve_id(concept_id)
        if found is None:
            hint = unknown_id_hint(concept_id, self.meta["sources"], set(self.meta["prefixes"]))
            raise InputError(None, f"unknown concept id {concept_id!r}{hint}")
        return found

    def concept(self, concept_id: str) -> Concept:
        record = self._rows("SELECT record FROM concepts WHERE id = ?", (self.resolve(concept_id),))[0][0]
        return Concept.from_dict(json.loads(record))

    def children(self, concept_id: str) -> list[str]:
        return json.loads(self._rows("SELECT children FROM concepts WHERE id = ?", (self.resolve(concept_id),))[0][0])

    def names(self, ids: Sequence[str]) -> dict[str, str]:
        """Concept id -> name for ``ids`` (current ids)."""
        out = {}
        for cid in dict.fromkeys(ids):
            found = self._rows("SELECT name FROM concepts WHERE id = ?", (cid,))
            if found:
                out[cid] = found[0][0]
        return out

    def _parents(self, concept_id: str) -> list[str]:
        record = json.loads(self._rows("SELECT record FROM concepts WHERE id = ?", (concept_id,))[0][0])
        return record.get("parents", [])

    def ancestors(self, concept_id: str) -> list[str]:
        """All ancestors, nearest first, in the order of :meth:`DiseaseGraph.ancestors`."""
        start = self.resolve(concept_id)
        dist = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for parent in self._parents(node):
                if parent not in dist:
                    dist[parent] = dist[node] + 1
                    queue.append(parent)
        return [a for a, d in sorted(dist.items(), key=lambda kv: kv[1]) if d > 0]

    def prompts(self, ids: Sequence[str], templates: str | Sequence[str] = "pathology",
                scopes: tuple[str, ...] = ("EXACT",)) -> dict[str, list[str]]:
        """Same as :meth:`DiseaseGraph.prompts`."""
        from medvl.knowledge.templates import load_templates, render_prompts

        return {self.resolve(i): render_prompts(self.concept(i).names(scopes), load_templates(templates)) for i in ids}

    # ------------------------------------------------------------------ whole objects
    def tagger(self) -> ConceptTagger:
        """The default tagger (every concept's names and EXACT/RELATED synonyms), as built with the index."""
        from medvl.knowledge.tagger import ConceptTagger

        with paused_gc():
            return ConceptTagger.from_dict(json.loads(self._blob("tagger")))

    def graph(self) -> DiseaseGraph:
        """The whole graph, read back from its rows; its :meth:`~DiseaseGraph.search` answers from this index."""
        try:
            with paused_gc():
                data = json.loads(self._blob("graph"))
            graph = DiseaseGraph.from_rows(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputError(self.path, f"corrupt graph rows in the index ({exc}); delete it to rebuild") from None
        graph.attach_index(self)
        return graph

    def __repr__(self) -> str:
        return f"GraphIndex({self.path}, {len(self)} concepts, fingerprint {self.fingerprint})"


def memory_index(graph: DiseaseGraph, fingerprint: str) -> GraphIndex:
    """An index held in memory (when no cache folder is writable)."""
    from medvl.knowledge.fuzzy import FuzzyIndex

    rows = label_rows(graph)
    matcher = FuzzyIndex.build(list(rows))
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    fill_index(conn, graph, fingerprint, "", rows, matcher.to_arrays()[1])
    index = GraphIndex(conn, Path(":memory:"))
    index._matcher = matcher
    return index
