"""Sparse lexical retrieval: an inverted index over vocabulary weights (LexLIP), with "which words matched".

Documents are rows of a ``[N, V]`` sparse weight matrix (:class:`medvl.models.lexical.LexicalEncoder`). The index
stores it column-major: for every vocabulary term, the posting list of the documents that carry it and their
weights. A query scores term at a time: only the posting lists of its own non-zero terms are read, and each
document's score is the dot product of the two weight vectors. The index records the vocabulary fingerprint (and the
encoder's) it was built with; queries encoded over another vocabulary are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvl.errors import InputError

__all__ = ["SparseIndex", "matched_terms"]

POSTINGS_FILE = "postings.npz"
META_FILE = "metadata.parquet"
INFO_FILE = "index.json"
VOCAB_FILE = "vocab.txt"


class SparseIndex:
    """An inverted index of non-negative term weights with one metadata row per document.

    Attributes:
        postings: ``scipy.sparse.csc_matrix [N, V]`` (column t = posting list of term t).
        metadata: DataFrame aligned with the documents.
        vocabulary: the term of each column.
        info: count, vocabulary size and fingerprint, encoder fingerprint, non-zeros.
    """

    def __init__(self, postings, metadata: pd.DataFrame, vocabulary: list[str], info: dict[str, Any]):
        self.postings = postings
        self.metadata = metadata.reset_index(drop=True)
        self.vocabulary = vocabulary
        self.info = info

    def __len__(self) -> int:
        return int(self.postings.shape[0])

    @classmethod
    def build(cls, weights, vocabulary: list[str], metadata: pd.DataFrame | None = None, *,
              vocab_fingerprint: str, encoder: str | None = None) -> SparseIndex:
        """Index ``weights`` (a ``[N, V]`` scipy sparse matrix or array of non-negative weights)."""
        from scipy import sparse

        csc = sparse.csc_matrix(weights, dtype=np.float32)
        csc.eliminate_zeros()
        n, v = csc.shape
        if n == 0:
            raise InputError(None, "cannot build an index over zero documents")
        if v != len(vocabulary):
            raise InputError(None, f"weights have {v} columns but the vocabulary has {len(vocabulary)} terms")
        if csc.nnz and csc.data.min() < 0:
            raise InputError(None, "sparse weights must be non-negative")
        if metadata is not None and len(metadata) != n:
            raise InputError(None, f"metadata has {len(metadata)} rows for {n} documents")
        info = {"kind": "sparse", "count": int(n), "vocab_size": int(v), "vocab_fingerprint": vocab_fingerprint,
                "encoder": encoder, "nnz": int(csc.nnz), "terms_used": int((np.diff(csc.indptr) > 0).sum())}
        meta = metadata if metadata is not None else pd.DataFrame({"item": np.arange(n)})
        return cls(csc, meta, list(vocabulary), info)

    def check_query(self, vocab_fingerprint: str) -> None:
        """Refuse query weights over another vocabulary."""
        mine = self.info["vocab_fingerprint"]
        if vocab_fingerprint != mine:
            raise InputError(None, f"the query vocabulary ({vocab_fingerprint[:12]}) is not the one this sparse index "
                                   f"was built with ({mine[:12]}): encode queries with the index's lexical encoder")

    def scores(self, query) -> np.ndarray:
        """Scores ``[N]`` of one query (a ``[1, V]`` sparse row), accumulated over its terms' posting lists."""
        from scipy import sparse

        q = sparse.csr_matrix(query, dtype=np.float32)
        if q.shape[1] != self.postings.shape[1]:
            raise InputError(None, f"the query has {q.shape[1]} terms, the index vocabulary {self.postings.shape[1]}")
        indptr, docs, vals = self.postings.indptr, self.postings.indices, self.postings.data
        parts_d, parts_w = [], []
        for term, w in zip(q.indices, q.data, strict=True):
            lo, hi = indptr[term], indptr[term + 1]
            parts_d.append(docs[lo:hi])
            parts_w.append(vals[lo:hi] * w)
        if not parts_d:
            return np.zeros(len(self), dtype=np.float32)
        return np.bincount(np.concatenate(parts_d), weights=np.concatenate(parts_w), minlength=len(self))

    def search_arrays(self, queries, k: int = 10, vocab_fingerprint: str | None = None):
        """``(scores [Q, k], ids [Q, k])`` for ``[Q, V]`` sparse queries; documents scoring 0 get id -1."""
        from scipy import sparse

        if vocab_fingerprint is not None:
            self.check_query(vocab_fingerprint)
        q = sparse.csr_matrix(queries, dtype=np.float32)
        k = min(k, len(self))
        out_s = np.zeros((q.shape[0], k), dtype=np.float32)
        out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        for r in range(q.shape[0]):
            s = self.scores(q[r])
            top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
            top = top[np.argsort(-s[top], kind="stable")]
            hit = s[top] > 0
            out_s[r, : hit.sum()], out_i[r, : hit.sum()] = s[top][hit], top[hit]
        return out_s, out_i

    def search(self, queries, k: int = 10, vocab_fingerprint: str | None = None,
               explain: int = 0) -> list[pd.DataFrame]:
        """Top-k hits per query: ``rank``, ``score``, ``id``, metadata and (with ``explain``) the matched words."""
        from scipy import sparse

        q = sparse.csr_matrix(queries, dtype=np.float32)
        scores, ids = self.search_arrays(q, k, vocab_fingerprint)
        results = []
        for r, (s_row, i_row) in enumerate(zip(scores, ids, strict=True)):
            valid = i_row >= 0
            hits = self.metadata.iloc[i_row[valid]].reset_index(drop=True)
            hits.insert(0, "id", i_row[valid])
            hits.insert(0, "score", s_row[valid].astype(float))
            hits.insert(0, "rank", np.arange(1, int(valid.sum()) + 1))
            if explain:
                hits["matched"] = [matched_terms(q[r], self.postings[int(d)], self.vocabulary, explain)
                                   for d in i_row[valid]]
            results.append(hits)
        return results

    def size_bytes(self) -> int:
        """Bytes of the posting lists (indices, weights and offsets) in memory."""
        p = self.postings
        return int(p.data.nbytes + p.indices.nbytes + p.indptr.nbytes)

    def save(self, folder: str | Path) -> Path:
        """Write postings, metadata, vocabulary and ``index.json`` (last: a killed build is not loadable)."""
        from scipy import sparse

        from medvl.atomic import atomic_path, atomic_write_json, atomic_write_text, sweep_temporaries

        folder = Path(folder)
        sweep_temporaries(folder)
        (folder / INFO_FILE).unlink(missing_ok=True)
        with atomic_path(folder / POSTINGS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                sparse.save_npz(fh, self.postings, compressed=False)
        with atomic_path(folder / META_FILE) as tmp:
            self.metadata.to_parquet(tmp, index=False)
        atomic_write_text(folder / VOCAB_FILE, "\n".join(self.vocabulary) + "\n")
        atomic_write_json(folder / INFO_FILE, self.info)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SparseIndex:
        from scipy import sparse

        folder = Path(folder)
        missing = [f for f in (POSTINGS_FILE, META_FILE, INFO_FILE, VOCAB_FILE) if not (folder / f).is_file()]
        if missing:
            raise InputError(folder, f"not a sparse index folder (missing {', '.join(missing)})")
        info = json.loads((folder / INFO_FILE).read_text())
        postings = sparse.load_npz(folder / POSTINGS_FILE).tocsc()
        vocabulary = (folder / VOCAB_FILE).read_text(encoding="utf-8").split("\n")[: info["vocab_size"]]
        metadata = pd.read_parquet(folder / META_FILE)
        if postings.shape[0] != len(metadata) or postings.shape[1] != len(vocabulary):
            raise InputError(folder, "postings, metadata and vocabulary do not line up: rebuild the index")
        return cls(postings, metadata, vocabulary, info)


def matched_terms(query, doc, vocabulary: list[str], top: int = 5) -> list[dict[str, Any]]:
    """The terms a query and a document share, by contribution ``w_q * w_d`` (largest first)."""
    from scipy import sparse

    q, d = sparse.csr_matrix(query), sparse.csr_matrix(doc)
    dw = dict(zip(d.indices.tolist(), d.data.tolist(), strict=True))
    shared = [(vocabulary[t], float(w), dw[t]) for t, w in zip(q.indices.tolist(), q.data.tolist(), strict=True)
              if t in dw]
    shared.sort(key=lambda x: -x[1] * x[2])
    return [{"term": t, "query": round(wq, 4), "doc": round(wd, 4), "contribution": round(wq * wd, 4)}
            for t, wq, wd in shared[:top]]
