"""Retrieval index: FAISS over L2-normalised embeddings (inner product = cosine) with Parquet metadata.

Exact search (``flat``) for small collections; an inverted file (``ivf``, trained k-means coarse quantiser) or an
HNSW graph (``hnsw``) for large ones. ``kind="auto"`` picks flat below ``flat_max`` vectors and IVF above. The same
index serves text->image, image->text and case->case queries: the query only has to live in the same joint space
(the index records the encoder and modality of its vectors and refuses queries of another width).

Example:
    >>> index = RetrievalIndex.build(embeddings, metadata=pd.DataFrame({"slide": names}))
    >>> hits = index.search(query_vectors, k=10)      # list of DataFrames with score and metadata
    >>> index.save("ws/index/slides"); RetrievalIndex.load("ws/index/slides")
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medvl.config import Config, dataclass
from medvl.errors import ConfigError, InputError
from medvl.log import get_logger
from medvl.tasks.vectors import l2_normalise_c

log = get_logger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "metadata.parquet"
INFO_FILE = "index.json"


@dataclass
class IndexConfig(Config):
    """How to build a :class:`RetrievalIndex`.

    Attributes:
        kind: "auto", "flat" (exact), "ivf" (inverted file, approximate) or "hnsw" (graph, approximate).
        flat_max: with "auto", collections up to this size use exact search.
        nlist: IVF cells (default ~4 sqrt(N), at most N/39 so each cell has training points).
        nprobe: IVF cells visited per query.
        train_size: vectors sampled to train the IVF quantiser.
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build beam width.
        ef_search: HNSW query beam width.
        seed: seed of the training sample and k-means.
    """

    kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    flat_max: int = 50_000
    nlist: int | None = None
    nprobe: int = 32
    train_size: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    seed: int = 0

    def validate(self) -> None:
        if self.nprobe < 1 or self.hnsw_m < 2 or self.ef_search < 1 or self.train_size < 1:
            raise ConfigError("nprobe, ef_search and train_size must be >= 1 and hnsw_m >= 2")


def _build_flat(dim: int, cfg: IndexConfig, sample: np.ndarray | None, n: int):
    import faiss

    return faiss.IndexFlatIP(dim)


def _build_ivf(dim: int, cfg: IndexConfig, sample: np.ndarray | None, n: int):
    import faiss

    nlist = cfg.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantiser = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = cfg.seed
    index.train(sample)
    index.nprobe = min(cfg.nprobe, nlist)
    return index


def _build_hnsw(dim: int, cfg: IndexConfig, sample: np.ndarray | None, n: int):
    import faiss

    index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = cfg.ef_construction
    index.hnsw.efSearch = cfg.ef_search
    return index


_BUILDERS = {"flat": _build_flat, "ivf": _build_ivf, "hnsw": _build_hnsw}


class RetrievalIndex:
    """A FAISS index with one metadata row per vector.

    Attributes:
        index: the FAISS index.
        metadata: DataFrame aligned with the vectors (row i describes vector i).
        info: dimension, kind, count, encoder and modality of the vectors.
    """

    def __init__(self, index, metadata: pd.DataFrame, info: dict[str, Any]):
        self.index = index
        self.metadata = metadata.reset_index(drop=True)
        self.info = info

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, embeddings: np.ndarray, metadata: pd.DataFrame | None = None, config: IndexConfig | None = None,
              *, encoder: str | None = None, modality: str | None = None, batch: int = 100_000) -> RetrievalIndex:
        """Build an index over ``embeddings [N, D]`` (normalised here) with optional metadata rows."""
        cfg = config or IndexConfig()
        n, dim = embeddings.shape
        if n == 0:
            raise InputError(None, "cannot build an index over zero vectors")
        if metadata is not None and len(metadata) != n:
            raise InputError(None, f"metadata has {len(metadata)} rows for {n} vectors")
        kind = cfg.kind if cfg.kind != "auto" else ("flat" if n <= cfg.flat_max else "ivf")
        rng = np.random.default_rng(cfg.seed)
        pick = np.sort(rng.choice(n, size=min(n, cfg.train_size), replace=False))
        index = _BUILDERS[kind](dim, cfg, l2_normalise_c(embeddings[pick]) if kind == "ivf" else None, n)
        for start in range(0, n, batch):
            index.add(l2_normalise_c(embeddings[start : start + batch]))
        info = {"dim": int(dim), "kind": kind, "count": int(n), "encoder": encoder, "modality": modality,
                "config": cfg.to_dict()}
        if kind == "ivf":
            info["nlist"] = int(index.nlist)
        meta = metadata if metadata is not None else pd.DataFrame({"item": np.arange(n)})
        return cls(index, meta, info)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade recall for speed at query time."""
        if nprobe is not None and self.kind == "ivf":
            self.index.nprobe = int(nprobe)
        if ef_search is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = int(ef_search)

    def check_query(self, queries: np.ndarray, encoder: str | None = None) -> np.ndarray:
        """Normalise queries and refuse vectors from another space (width or encoder name)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise InputError(None, f"query vectors are {queries.shape[1]}-d but the index holds {self.dim}-d vectors "
                                   f"(encoder {self.info.get('encoder') or 'unknown'})")
        mine = self.info.get("encoder")
        if encoder and mine and encoder != mine:
            raise InputError(None, f"query vectors come from encoder '{encoder}' but the index was built with '{mine}'")
        return l2_normalise_c(queries)

    def search_arrays(self, queries: np.ndarray, k: int = 10, encoder: str | None = None):
        """Raw search: ``(scores [Q, k], ids [Q, k])``; missing neighbours have id -1."""
        q = self.check_query(queries, encoder)
        return self.index.search(q, min(k, len(self)))

    def search(self, queries: np.ndarray, k: int = 10, encoder: str | None = None) -> list[pd.DataFrame]:
        """Top-k hits per query as DataFrames: ``rank``, ``score``, ``id`` and the metadata columns."""
        scores, ids = self.search_arrays(queries, k, encoder)
        results = []
        for s_row, i_row in zip(scores, ids, strict=True):
            valid = i_row >= 0
            hits = self.metadata.iloc[i_row[valid]].reset_index(drop=True)
            hits.insert(0, "id", i_row[valid])
            hits.insert(0, "score", s_row[valid].astype(float))
            hits.insert(0, "rank", np.arange(1, int(valid.sum()) + 1))
            results.append(hits)
        return results

    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``metadata.parquet`` and ``index.json`` (each atomically).

        ``index.json`` goes first out and last in: a build killed halfway leaves a folder :meth:`load` refuses, never
        new vectors beside old metadata. Temporaries of an earlier killed build are removed.
        """
        import faiss

        from medvl.atomic import atomic_path, atomic_write_json, sweep_temporaries

        folder = Path(folder)
        sweep_temporaries(folder)
        (folder / INFO_FILE).unlink(missing_ok=True)
        with atomic_path(folder / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_path(folder / META_FILE) as tmp:
            self.metadata.to_parquet(tmp, index=False)
        atomic_write_json(folder / INFO_FILE, self.info)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalIndex:
        """Load an index folder written by :meth:`save`."""
        import faiss

        folder = Path(folder)
        missing = [f for f in (INDEX_FILE, META_FILE, INFO_FILE) if not (folder / f).is_file()]
        if missing:
            raise InputError(folder, f"not an index folder (missing {', '.join(missing)})")
        info = json.loads((folder / INFO_FILE).read_text())
        index = faiss.read_index(str(folder / INDEX_FILE))
        metadata = pd.read_parquet(folder / META_FILE)
        if index.ntotal != len(metadata):
            raise InputError(folder, f"index holds {index.ntotal} vectors, metadata {len(metadata)} rows: rebuild it")
        if info["kind"] == "ivf":
            index.nprobe = int(info["config"].get("nprobe", 32))
        elif info["kind"] == "hnsw":
            index.hnsw.efSearch = int(info["config"].get("ef_search", 64))
        return cls(index, metadata, info)


def exact_neighbours(base: np.ndarray, queries: np.ndarray, k: int, batch: int = 200_000) -> np.ndarray:
    """Exact top-k ids by inner product, streaming over ``base`` in blocks (ground truth for recall)."""
    q = l2_normalise_c(queries)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(base), batch):
        block = l2_normalise_c(base[start : start + batch])
        s = q @ block.T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_i


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Fraction of the exact top-k found in the approximate top-k, averaged over queries."""
    k = exact_ids.shape[1]
    hits = [len(set(a[:k]) & set(e)) / k for a, e in zip(approx_ids, exact_ids, strict=True)]
    return float(np.mean(hits))
