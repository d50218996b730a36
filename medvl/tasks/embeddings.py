"""Embedding files the tasks read: the one layout per suffix lives in :mod:`medvl.io.embeddings`.

Kept so ``from medvl.tasks.embeddings import EmbeddingSet, load_embeddings, save_embeddings`` keeps working.
"""

from __future__ import annotations

from medvl.io.embeddings import EMBEDDING_PREFIX, EmbeddingSet, load_embeddings, save_embeddings

__all__ = ["EMBEDDING_PREFIX", "EmbeddingSet", "load_embeddings", "save_embeddings"]
