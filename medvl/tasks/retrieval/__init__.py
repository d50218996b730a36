"""Retrieval: a FAISS index of joint-space embeddings with metadata (``index``), built from feature files and
searched by text, image or embedding queries (``build``, as ``medvl index build|search`` do)."""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("IndexConfig", "RetrievalIndex"), "medvl.tasks.retrieval.index"),
    **dict.fromkeys(("build_index", "collect", "expand_inputs", "query_vectors", "search_index"),
                    "medvl.tasks.retrieval.build"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
