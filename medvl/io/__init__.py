"""Readers and stores: slides, volumes, cohort manifests, feature stores, atomic writes.

The names below load their module on first use, so ``import medvl.io`` stays light.
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_LAZY = {
    "open_slide": "medvl.io.slide",
    "Slide": "medvl.io.slide",
    "load_volume": "medvl.io.volume",
    "Volume": "medvl.io.volume",
    "FeatureStore": "medvl.io.features",
    "read_features": "medvl.io.features",
    "read_manifest": "medvl.io.manifest",
    "EmbeddingSet": "medvl.io.embeddings",
    "load_embeddings": "medvl.io.embeddings",
    "save_embeddings": "medvl.io.embeddings",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
