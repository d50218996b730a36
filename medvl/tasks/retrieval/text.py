"""Text collections searched densely (FAISS), sparsely (LexLIP inverted index) or both, with fused scores.

``build_text_index(texts, out, config, metadata)`` embeds the texts with the dense encoder (a text tower, or a model's
``encode_text`` for its joint space) and/or the lexical encoder, and writes one folder::

    index.json        kind (dense | sparse | hybrid), encoders and their fingerprints, fusion
    dense/            a RetrievalIndex (FAISS)
    sparse/           a SparseIndex (inverted posting lists)

:class:`TextIndex` loads it, encodes queries with the same encoders (a lexical encoder given at search time must have
the index's vocabulary and fingerprint) and fuses the two rankings: ``minmax`` takes ``alpha * dense + (1 - alpha) *
sparse`` after scaling each list's scores to [0, 1] over its top candidates (a document missing from a list scores 0
there); ``rrf`` sums reciprocal ranks ``1 / (60 + rank)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError, InputError
from medvl.tasks.retrieval.index import IndexConfig, RetrievalIndex
from medvl.tasks.retrieval.sparse import SparseIndex, matched_terms

__all__ = ["TEXT_KINDS", "TextIndex", "TextIndexConfig", "build_text_index", "fuse", "is_text_index",
           "read_text_table"]

TEXT_KINDS = ("dense", "sparse", "hybrid")
INFO_FILE = "index.json"
RRF_K = 60


@dataclass
class TextIndexConfig(Config):
    """How a text collection is indexed.

    Attributes:
        kind: ``dense`` (FAISS over text embeddings), ``sparse`` (LexLIP inverted index) or ``hybrid`` (both, fused).
        dense: the FAISS structure of the dense side.
        text_encoder: dense encoder: a registered text tower (raw, e.g. ``hf-text``) or a model (joint space).
        lexical: a lexical encoder folder (``None``: the untrained tied head over ``hf-text``).
        fusion: ``minmax`` (weighted sum of scaled scores) or ``rrf`` (reciprocal rank fusion).
        alpha: weight of the dense score in ``minmax`` fusion.
        candidates: hits taken from each side before fusing.
    """

    kind: Literal["dense", "sparse", "hybrid"] = "hybrid"
    dense: IndexConfig = field(default_factory=IndexConfig)
    text_encoder: str = "hf-text"
    lexical: str | None = None
    fusion: Literal["minmax", "rrf"] = "minmax"
    alpha: float = 0.5
    candidates: int = 100

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or self.candidates < 1:
            raise ConfigError("TextIndexConfig: alpha must be in [0, 1] and candidates >= 1")


def _lexical(spec: str | None):
    from medvl.models.lexical import LexicalEncoder

    return LexicalEncoder() if spec is None else LexicalEncoder.load(spec)


def build_text_index(texts: list[str], out: str | Path, config: TextIndexConfig | None = None,
                     metadata: pd.DataFrame | None = None) -> dict[str, Any]:
    """Index ``texts`` (one document each) into the folder ``out``; returns a JSON-able record."""
    from medvl.atomic import atomic_write_json

    cfg = config or TextIndexConfig()
    if not texts:
        raise InputError(None, "no texts to index")
    meta = metadata if metadata is not None else pd.DataFrame({"row": np.arange(len(texts))})
    out = Path(out)
    (out / INFO_FILE).unlink(missing_ok=True)  # index.json goes last: a killed build is never loadable
    info: dict[str, Any] = {"kind": cfg.kind, "format": "medvl-text-index", "count": len(texts),
                            "config": cfg.to_dict()}
    if cfg.kind in ("dense", "hybrid"):
        from medvl.tasks.cohort.embed import text_embeddings

        dense = RetrievalIndex.build(text_embeddings(texts, cfg.text_encoder), meta, cfg.dense,
                                     encoder=cfg.text_encoder, modality="text")
        dense.save(out / "dense")
        info["dense"] = {"encoder": cfg.text_encoder, "dim": dense.dim, "structure": dense.kind}
    if cfg.kind in ("sparse", "hybrid"):
        enc = _lexical(cfg.lexical)
        sparse_index = SparseIndex.build(enc.encode_sparse(texts), enc.vocabulary, meta,
                                         vocab_fingerprint=enc.vocab_fingerprint, encoder=enc.fingerprint)
        sparse_index.save(out / "sparse")
        info["sparse"] = {"lexical": cfg.lexical, "encoder_fingerprint": enc.fingerprint,
                          "vocab_fingerprint": enc.vocab_fingerprint, "nnz": sparse_index.info["nnz"],
                          "bytes": sparse_index.size_bytes()}
    atomic_write_json(out / INFO_FILE, info)
    return {"index": str(out), **{k: v for k, v in info.items() if k != "config"}}


def read_text_table(path: str | Path, column: str, id_column: str | None = None
                    ) -> tuple[list[str], pd.DataFrame, int]:
    """Documents of a CSV/TSV/Parquet table: ``(texts, metadata with row [and case_id], empty rows skipped)``."""
    from medvl.tasks.survival.tables import read_table

    df = read_table(path)
    for col in (column, id_column):
        if col is not None and col not in df.columns:
            raise InputError(path, f"no column '{col}' (columns: {', '.join(map(str, df.columns))})")
    text = df[column]
    keep = (text.notna() & (text.astype(str).str.strip() != "")).to_numpy()
    if not keep.any():
        raise InputError(path, f"column '{column}' holds no text")
    meta = pd.DataFrame({"row": np.flatnonzero(keep)})
    if id_column is not None:
        meta["case_id"] = df[id_column][keep].astype(str).to_numpy()
    return text[keep].astype(str).tolist(), meta, int((~keep).sum())


def is_text_index(folder: str | Path) -> bool:
    path = Path(folder) / INFO_FILE
    try:
        return path.is_file() and json.loads(path.read_text()).get("format") == "medvl-text-index"
    except (OSError, ValueError):
        return False


def fuse(dense: tuple[np.ndarray, np.ndarray], sparse: tuple[np.ndarray, np.ndarray], fusion: str, alpha: float,
         k: int) -> list[tuple[int, float, float | None, float | None]]:
    """Fused ranking of one query from ``(scores, ids)`` of each side: ``[(id, fused, dense, sparse), ...]``.

    A side without hits leaves the other side's ranking with its raw scores.
    """
    sides = []
    for scores, ids in (dense, sparse):
        keep = ids >= 0
        sides.append(dict(zip(ids[keep].tolist(), scores[keep].tolist(), strict=True)))
    if not sides[0] or not sides[1]:
        only = sides[0] or sides[1]
        order = sorted(only, key=lambda d: (-only[d], d))[:k]
        return [(d, only[d], sides[0].get(d), sides[1].get(d)) for d in order]
    fused: dict[int, float] = {}
    for weight, side in zip((alpha, 1.0 - alpha), sides, strict=True):
        if fusion == "rrf":
            for rank, doc in enumerate(sorted(side, key=lambda d: -side[d]), start=1):
                fused[doc] = fused.get(doc, 0.0) + 1.0 / (RRF_K + rank)
            continue
        lo, hi = min(side.values()), max(side.values())
        for doc, s in side.items():
            fused[doc] = fused.get(doc, 0.0) + weight * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    order = sorted(fused, key=lambda d: (-fused[d], d))[:k]
    return [(d, fused[d], sides[0].get(d), sides[1].get(d)) for d in order]


class TextIndex:
    """A loaded text index folder (see the module docstring)."""

    def __init__(self, folder: str | Path, lexical: str | None = None):
        folder = Path(folder)
        if not is_text_index(folder):
            raise InputError(folder, "not a text index folder (build one with medvl index build --texts ...)")
        self.folder = folder
        self.info = json.loads((folder / INFO_FILE).read_text())
        self.config = TextIndexConfig.from_dict(self.info["config"])
        self.kind = self.info["kind"]
        self.dense = RetrievalIndex.load(folder / "dense") if self.kind in ("dense", "hybrid") else None
        self.sparse = SparseIndex.load(folder / "sparse") if self.kind in ("sparse", "hybrid") else None
        self.encoder = None
        self.embed = None
        if self.dense is not None:
            from medvl.tasks.cohort.embed import load_text_encoder

            self.embed = load_text_encoder(self.config.text_encoder)  # loaded once, not per query
        if self.sparse is not None:
            self.encoder = _lexical(lexical if lexical is not None else self.config.lexical)
            self.sparse.check_query(self.encoder.vocab_fingerprint)
            if self.encoder.fingerprint != self.info["sparse"]["encoder_fingerprint"]:
                raise InputError(lexical or folder, "this lexical encoder is not the one the sparse index was built "
                                                    "with (same vocabulary, other weights)")

    def __len__(self) -> int:
        return int(self.info["count"])

    def search(self, queries: list[str], k: int = 10, explain: int = 0) -> list[pd.DataFrame]:
        """Top-k hits per query text (``rank``, ``score``, per-side scores, ``id``, metadata, ``matched``)."""
        if not queries:
            raise InputError(None, "give a query: --text TEXT")
        n = max(k, self.config.candidates) if self.kind == "hybrid" else k
        dense = sparse = None
        if self.dense is not None:
            dense = self.dense.search_arrays(self.embed(queries), n)
        q_sparse = None
        if self.sparse is not None:
            q_sparse = self.encoder.encode_sparse(queries)
            sparse = self.sparse.search_arrays(q_sparse, n, self.encoder.vocab_fingerprint)
        meta = (self.dense or self.sparse).metadata
        empty = (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
        dense, sparse = dense or empty, sparse or empty
        results = []
        for r in range(len(queries)):
            ranked = fuse((dense[0][r], dense[1][r]), (sparse[0][r], sparse[1][r]), self.config.fusion,
                          self.config.alpha, k)
            hits = meta.iloc[[d for d, *_ in ranked]].reset_index(drop=True)
            hits.insert(0, "id", [d for d, *_ in ranked])
            for name, col in (("sparse_score", 3), ("dense_score", 2)):
                if (self.sparse if name == "sparse_score" else self.dense) is not None:
                    hits.insert(0, name, [x[col] for x in ranked])
            hits.insert(0, "score", [x[1] for x in ranked])
            hits.insert(0, "rank", np.arange(1, len(ranked) + 1))
            if explain and q_sparse is not None:
                hits["matched"] = [matched_terms(q_sparse[r], self.sparse.postings[d], self.sparse.vocabulary,
                                                 explain) for d, *_ in ranked]
            results.append(hits)
        return results
