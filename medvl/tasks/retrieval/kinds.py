"""Neighbours of the right kind: what kind of case each index row is, and searches that stay within one kind.

Every row of an index carries its case kind in metadata columns (:data:`KIND_FIELDS`): the imaging ``modality``
(``slide``, ``CT``, ``ultrasound``, ...) and, where known, the ``stain``, ``organ`` and ``magnification``. The index
records its modalities and its embedding space (:func:`embedding_space`). A search with a query kind only returns
rows of that modality, and of the same stain, organ and magnification where both the row and the query know them;
a query whose modality the index does not hold is refused with a message. Mixing kinds is an explicit choice
(``mix=True``; ``--mix-modalities`` on the command line).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from medvl.errors import InputError
from medvl.provenance import Provenance

__all__ = ["KIND_FIELDS", "CaseKind", "embedding_space", "kind_of_embeddings", "matching_rows", "search_kind"]

KIND_FIELDS = ("modality", "stain", "organ", "magnification")
#: the model tower an embedding file belongs to -> the imaging modality of its cases, where the tower implies one
TOWER_MODALITY = {"volume": "CT"}


@dataclass(frozen=True)
class CaseKind:
    """What kind of case a vector is (``None``: unknown, matches anything)."""

    modality: str | None = None
    stain: str | None = None
    organ: str | None = None
    magnification: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def describe(self) -> str:
        parts = [v for v in (self.stain, self.organ, self.magnification) if v]
        return (self.modality or "any modality") + (f" ({', '.join(parts)})" if parts else "")


def embedding_space(provenance: Provenance) -> str:
    """The embedding space an index's vectors live in, recorded in ``index.json``: the content fingerprint of the
    parts that define it (model weights, preprocessing, tiling; :meth:`medvl.provenance.Provenance.space`)."""
    return provenance.space().fingerprint()


def _magnification(mpp: Any) -> str | None:
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        return None
    return f"{10.0 / value:.3g}x" if value > 0 else None  # 0.5 µm/px is 20x, 0.25 µm/px 40x


def kind_of_embeddings(emb: Any, tile_features: bool) -> CaseKind:
    """The kind of an embedding set: slides for tile features (stain and organ from their attributes, the
    magnification from the tiles' µm per pixel), the tower's modality otherwise."""
    attrs = getattr(emb, "attrs", {}) or {}
    if tile_features:
        return CaseKind("slide", attrs.get("stain") or None, attrs.get("organ") or None,
                        _magnification(attrs.get("mpp")))
    return CaseKind(attrs.get("imaging_modality") or TOWER_MODALITY.get(emb.modality or "", emb.modality or None),
                    None, attrs.get("organ") or None, None)


def matching_rows(metadata: pd.DataFrame, kind: CaseKind) -> np.ndarray:
    """Bool per row: the row's kind agrees with ``kind`` on every field both know."""
    keep = np.ones(len(metadata), dtype=bool)
    for name, value in kind.to_dict().items():
        if value is None or name not in metadata.columns:
            continue
        column = metadata[name]
        keep &= (column.isna() | (column.astype(str) == str(value))).to_numpy()
    return keep


def index_modalities(index: Any) -> list[str]:
    meta = index.metadata
    if "modality" in meta.columns:
        return sorted({str(v) for v in meta["modality"].dropna()})
    return list(index.info.get("modalities") or [])


def check_kind(index: Any, kind: CaseKind | None, mix: bool) -> None:
    """Refuse a query the index holds no case of its kind for (or, on a mixed index, a query of unknown kind)."""
    if mix:
        return
    held = index_modalities(index)
    if kind is None or kind.modality is None:
        if len(held) > 1:
            raise InputError(None, f"the index holds several modalities ({', '.join(held)}): say which one to search "
                                   "(--modality) or mix them explicitly (--mix-modalities)")
        return
    if held and kind.modality not in held:
        raise InputError(None, f"a {kind.modality} query on an index of {', '.join(held)} cases is refused: "
                               "neighbours would come from another modality (mix them explicitly with "
                               "--mix-modalities)")


def search_kind(index: Any, queries: np.ndarray, k: int, kinds: list[CaseKind | None] | None = None,
                mix: bool = False) -> list[pd.DataFrame]:
    """Top-k hits per query among the rows of the query's kind (all rows with ``mix``)."""
    queries = np.atleast_2d(queries)
    kinds = kinds or [None] * len(queries)
    results = []
    for q, kind in zip(queries, kinds, strict=True):
        check_kind(index, kind, mix)
        if mix or kind is None:
            results.append(index.search(q[None], k=k)[0])
            continue
        keep = matching_rows(index.metadata, kind)
        wanted = min(k, int(keep.sum()))
        depth = min(len(index), max(4 * k, 16))
        while True:  # widen the search until k rows of the kind are found (or the whole index was seen)
            hits = index.search(q[None], k=depth)[0]
            hits = hits[keep[hits["id"].to_numpy()]]
            if len(hits) >= wanted or depth >= len(index):
                break
            depth = min(len(index), depth * 4)
        hits = hits.head(k).reset_index(drop=True)
        hits["rank"] = np.arange(1, len(hits) + 1)
        results.append(hits)
    return results
