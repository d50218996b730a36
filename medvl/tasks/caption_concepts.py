"""Caption -> concept retrieval: does a text encoder place a figure caption next to the disease it shows?

ROCO captions carry UMLS CUIs (``cuis.txt``: an id, then tab-separated CUIs); the Disease Ontology carries UMLS
xrefs. Each caption whose CUIs map to DO concepts is a query, embedded by the encoder and ranked against the names
of every concept of the graph source; recall@k is the share of queries with one of their concepts in the top k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError, InputError

__all__ = ["CaptionConceptSection", "caption_queries", "eval_caption_concepts"]


@dataclass
class CaptionConceptSection(Config):
    """The ``caption_concepts`` section of ``medvl eval``.

    Attributes:
        captions: ``captions.txt`` (id, tab, caption per line).
        cuis: ``cuis.txt`` (id, then tab-separated UMLS CUIs).
        model: a checkpoint folder or registered model whose text tower embeds captions and names.
        sources: graph sources; ``source``: the concepts ranked (``DOID``).
        ks: the recalls reported.
        max_queries: use the first N captions with a concept (0: all).
    """

    captions: Path
    cuis: Path
    model: str = ""
    sources: list[str] = field(default_factory=lambda: ["doid_ncit"])
    source: str = "DOID"
    ks: list[int] = field(default_factory=lambda: [1, 5])
    max_queries: int = 0
    batch_size: int = 128


def _read_table(path: Path) -> dict[str, list[str]]:
    if not Path(path).is_file():
        raise InputError(path, "file not found")
    out: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise InputError(path, f"line {number}: expected an id, a tab and the values")
        out[parts[0].strip()] = [p.strip() for p in parts[1:] if p.strip()]
    return out


def caption_queries(sec: CaptionConceptSection) -> tuple[list[str], list[set[int]], list[str]]:
    """(captions, the indices of their concepts among the names, the concept names) for captions with a concept."""
    from medvl.knowledge import BuildConfig, cached_graph

    graph = cached_graph(BuildConfig(sources=sec.sources))
    ids = graph.subgraph_ids(sec.source)
    if not ids:
        raise ConfigError(f"caption_concepts: the graph has no concept of source '{sec.source}'")
    index = {cid: i for i, cid in enumerate(ids)}
    by_cui: dict[str, set[int]] = {}
    for cid in ids:
        for cui in graph.concept(cid).xrefs.get("UMLS", []):
            by_cui.setdefault(cui, set()).add(index[cid])
    captions, cuis = _read_table(sec.captions), _read_table(sec.cuis)
    texts, relevant = [], []
    for key, values in cuis.items():
        hits = set().union(*(by_cui.get(c, set()) for c in values)) if values else set()
        if hits and captions.get(key):
            texts.append(" ".join(captions[key]))
            relevant.append(hits)
    if not texts:
        raise InputError(sec.cuis, "no caption has a CUI of a concept of the graph")
    if sec.max_queries:
        texts, relevant = texts[:sec.max_queries], relevant[:sec.max_queries]
    return texts, relevant, [graph.concept(cid).name for cid in ids]


def eval_caption_concepts(sec: CaptionConceptSection, out: Path | None = None, model: Any = None) -> dict[str, Any]:
    """Recall@k of each caption's concepts among every concept name (cosine of the encoder's embeddings)."""
    from medvl.tasks.report_classification import encode_texts

    if model is None:
        if not sec.model:
            raise ConfigError("caption_concepts: give a model")
        from medvl.models import create_model

        model = create_model(sec.model)
    texts, relevant, names = caption_queries(sec)
    q = encode_texts(model, texts, sec.batch_size)
    n = encode_texts(model, names, sec.batch_size)
    q /= np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    order = np.argsort(-(q @ n.T), axis=1)[:, :max(sec.ks)]
    metrics = {f"r@{k}": float(np.mean([bool(rel & set(row[:k].tolist())) for rel, row in
                                        zip(relevant, order, strict=True)])) for k in sec.ks}
    return {"metrics": metrics, "queries": len(texts), "concepts": len(names)}
