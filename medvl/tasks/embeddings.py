"""Embedding files the tasks read: ``.npz`` / ``.npy`` arrays, Parquet/CSV tables, and feature-store ``.h5`` files.

An ``.npz`` written by :func:`save_embeddings` holds ``embeddings [N, D]`` and optionally ``ids``, ``labels``,
``split``, plus scalar strings ``encoder`` and ``modality`` naming where the vectors came from (checked against a
model before mixing spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError

_ARRAY_KEYS = ("embeddings", "features", "X")


@dataclass
class EmbeddingSet:
    """Vectors with optional per-row ids, labels and split, and the encoder that produced them."""

    embeddings: np.ndarray
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    split: np.ndarray | None = None
    encoder: str | None = None
    modality: str | None = None
    projected: bool | None = None
    coords: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def subset(self, mask: np.ndarray) -> EmbeddingSet:
        pick = (lambda a: None if a is None else a[mask])  # noqa: E731 - tiny local helper
        return EmbeddingSet(self.embeddings[mask], pick(self.ids), pick(self.labels), pick(self.split), self.encoder,
                            self.modality, self.projected, pick(self.coords), dict(self.attrs))


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read an embeddings file by suffix; a clear error for a missing file, an unknown format or a bad array."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "embeddings file not found")
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(path, f"unsupported embeddings format '{path.suffix}' (use {', '.join(_LOADERS)})")
    emb = loader(path)
    if emb.embeddings.ndim != 2 or len(emb.embeddings) == 0:
        raise InputError(path, f"expected a non-empty [N, D] matrix, got shape {tuple(emb.embeddings.shape)}")
    if not np.isfinite(emb.embeddings).all():
        raise InputError(path, "embeddings contain NaN or infinite values")
    return emb


def save_embeddings(path: str | Path, emb: EmbeddingSet) -> Path:
    """Write an ``.npz`` atomically (loadable without pickle)."""
    from medvl.io.atomic import atomic_path

    arrays: dict[str, Any] = {"embeddings": np.asarray(emb.embeddings, dtype=np.float32)}
    for key in ("ids", "labels", "split", "coords"):
        value = getattr(emb, key)
        if value is not None:
            arr = np.asarray(value)
            arrays[key] = arr.astype(str) if arr.dtype == object else arr
    for key in ("encoder", "modality"):
        if getattr(emb, key):
            arrays[key] = np.array(getattr(emb, key))
    if emb.projected is not None:
        arrays["projected"] = np.array(bool(emb.projected))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def _load_npz(path: Path) -> EmbeddingSet:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"cannot read npz ({exc})") from None
    key = next((k for k in _ARRAY_KEYS if k in data.files), None)
    if key is None:
        raise InputError(path, f"no 'embeddings' array (arrays: {', '.join(data.files)})")
    get = (lambda k: data[k] if k in data.files else None)  # noqa: E731
    scalar = (lambda k: str(data[k]) if k in data.files else None)  # noqa: E731
    try:  # members are read lazily: object (pickled) or damaged members fail here
        projected = bool(data["projected"]) if "projected" in data.files else None
        return EmbeddingSet(np.asarray(data[key], dtype=np.float32), get("ids"), get("labels"), get("split"),
                            scalar("encoder"), scalar("modality"), projected, get("coords"))
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"cannot read npz ({' '.join(str(exc).split())[:200]})") from None


def _load_npy(path: Path) -> EmbeddingSet:
    try:
        return EmbeddingSet(np.asarray(np.load(path, allow_pickle=False), dtype=np.float32))
    except ValueError as exc:
        raise InputError(path, f"cannot read npy ({exc})") from None


def _load_table(path: Path) -> EmbeddingSet:
    from medvl.tasks.tables import EMBEDDING_PREFIX, read_table

    df = read_table(path)
    cols = [c for c in df.columns if str(c).startswith(EMBEDDING_PREFIX)]
    if not cols:
        raise InputError(path, f"no embedding columns (expected {EMBEDDING_PREFIX}0, {EMBEDDING_PREFIX}1, ...)")
    col = (lambda name: df[name].to_numpy() if name in df.columns else None)  # noqa: E731
    ids = col("case_id") if "case_id" in df.columns else col("id")
    return EmbeddingSet(df[cols].to_numpy(dtype=np.float32), None if ids is None else ids.astype(str), col("label"),
                        col("split"))


def _load_h5(path: Path) -> EmbeddingSet:
    try:
        from medvl.io.features import read_features
    except ImportError:  # pragma: no cover - the feature store ships with medvl
        raise InputError(path, "reading feature files needs medvl.io.features") from None
    features, coords, attrs = read_features(path)
    attrs = dict(attrs or {})
    projected = attrs.get("projected")
    return EmbeddingSet(np.asarray(features, dtype=np.float32), coords=None if coords is None else np.asarray(coords),
                        encoder=_as_str(attrs.get("encoder")), modality="image",
                        projected=None if projected is None else bool(projected), attrs=attrs)


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


_LOADERS = {
    ".npz": _load_npz,
    ".npy": _load_npy,
    ".parquet": _load_table,
    ".csv": _load_table,
    ".h5": _load_h5,
    ".hdf5": _load_h5,
}
