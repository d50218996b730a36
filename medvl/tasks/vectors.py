"""Array helpers every task shares: row-wise L2 normalisation and a stable softmax (numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["l2_normalise", "l2_normalise_c", "softmax"]

#: norms below this are treated as this (an all-zero row stays zero instead of becoming NaN)
EPS = 1e-12


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Unit-length rows (last axis) as float32; a 1-D array is one vector."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return x / max(float(np.linalg.norm(x)), EPS)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), EPS, None)


def l2_normalise_c(x: np.ndarray) -> np.ndarray:
    """:func:`l2_normalise` of a C-ordered float32 copy, C-ordered (what FAISS inner-product search expects)."""
    return np.ascontiguousarray(l2_normalise(np.ascontiguousarray(x, dtype=np.float32)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum for stability."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
