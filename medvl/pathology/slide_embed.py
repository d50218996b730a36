"""``medvl slide embed``: one embedding per slide from its tile features, with a slide encoder
(:mod:`medvl.pathology.slide_encoders`), written as one embeddings file (ids = slide ids = file stems).

Each feature file's width is checked against what the encoder reads before anything is encoded, so a folder with a
file of another tile encoder stops with that file's name and no output is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.embeddings import EmbeddingSet, save_embeddings
from medvl.pathology.slide_encoders import SlideEncoderSpec, load_slide_encoder

__all__ = ["embed_slides", "feature_files"]


def feature_files(source: str | Path) -> list[Path]:
    """A feature ``.h5`` as given, or the ``.h5`` files of a folder (sorted)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(source.glob("*.h5"))
        if not files:
            raise InputError(source, "no .h5 feature files in this folder")
        return files
    if not source.is_file():
        raise InputError(source, "no such feature file or folder")
    return [source]


def embed_slides(source: str | Path, spec: SlideEncoderSpec, out: str | Path) -> dict[str, Any]:
    """Embed every slide of ``source`` and write ``out`` (``.npz``, ``.parquet``, ``.csv`` or ``.h5``)."""
    from medvl.io.features import read_features

    files = feature_files(source)
    encoder = load_slide_encoder(spec)
    slides = []
    for path in files:
        feats, coords, attrs = read_features(path)
        if encoder.feature_dim is not None and feats.shape[1] != encoder.feature_dim:
            raise InputError(path, f"features are {feats.shape[1]}-d but {Path(encoder.name).name} reads "
                                   f"{encoder.feature_dim}-d tile features")
        if len(feats) == 0:
            raise InputError(path, "holds no tiles")
        slides.append((path.stem, feats, coords, attrs))
    vectors = np.stack([encoder.encode(f, c, a) for _, f, c, a in slides]).astype(np.float32)
    emb = EmbeddingSet(vectors, ids=np.array([s[0] for s in slides]), encoder=encoder.name,
                       modality=encoder.modality, projected=False)
    save_embeddings(out, emb)
    return {"out": str(out), "slides": len(slides), "dim": int(vectors.shape[1]), "encoder": encoder.name,
            "warnings": list(encoder.warnings)}
