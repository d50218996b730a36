"""Embeddings for duplicate detection: a text encoder over reports and, optionally, a model's image tower.

``text_encoder`` names a registered text tower (``hf-text``: the offline MiniLM, mean-pooled) or a model (a
registered name or a checkpoint folder, whose ``encode_text`` is used). ``image_model`` is a model with an image tower;
it embeds the rows of modality ``image`` with the model's own preprocessing (other pictures get no embedding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medvl.tasks.cohort.items import Pool
from medvl.tasks.vectors import l2_normalise

__all__ = ["image_embeddings", "load_text_encoder", "text_embeddings"]


def load_text_encoder(encoder: str, batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    """A function ``texts -> [N, D]`` L2-normalised embeddings, with the encoder loaded once."""
    import torch

    from medvl.models.registry import TOWERS, create_tower

    if encoder in TOWERS and TOWERS.get(encoder).modality == "text":
        encode = create_tower(encoder).eval().encode
    else:
        from medvl.models import create_model

        encode = create_model(encoder).eval().encode_text

    def embed(texts: list[str]) -> np.ndarray:
        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                parts.append(encode(list(texts[start:start + batch_size])).float().cpu().numpy())
        return l2_normalise(np.concatenate(parts)).astype(np.float32)

    return embed


def text_embeddings(texts: list[str], encoder: str, batch_size: int = 64) -> np.ndarray:
    """``[N, D]`` L2-normalised embeddings of ``texts``."""
    return load_text_encoder(encoder, batch_size)(texts)


def image_embeddings(pool: Pool, model: str) -> np.ndarray:
    """``[N, D]`` embeddings of the pictures of modality ``image`` (zeros for slides and CT views)."""
    from medvl.tasks.space import JointSpace

    space = JointSpace.load(model)
    out = np.zeros((len(pool), space.dim), dtype=np.float32)
    for k, (modality, path) in enumerate(zip(pool.modalities, pool.paths, strict=True)):
        if modality == "image" and path is not None:
            out[k] = space.encode_image_file(path)[0]
    return out
