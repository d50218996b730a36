"""Retrieval: a FAISS index of joint-space embeddings with metadata (``index``), built from feature files and
searched by text, image or embedding queries (``build``, as ``medvl index build|search`` do); a sparse lexical
inverted index (``sparse``) and text collections indexed densely, sparsely or both with fused scores (``text``)."""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("IndexConfig", "RetrievalIndex"), "medvl.tasks.retrieval.index"),
    **dict.fromkeys(("build_index", "collect", "expand_inputs", "query_vectors", "search_index"),
                    "medvl.tasks.retrieval.build"),
    "SparseIndex": "medvl.tasks.retrieval.sparse",
    **dict.fromkeys(("TextIndex", "TextIndexConfig", "build_text_index"), "medvl.tasks.retrieval.text"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
