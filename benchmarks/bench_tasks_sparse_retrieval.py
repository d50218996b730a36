"""Sparse lexical retrieval (LexLIP head + inverted index) vs dense FAISS vs hybrid on IU chest X-ray reports.

Each report with both sections gives a pair: the impression is the query, the findings the document to retrieve.
The pairs are split 70/30 (seeded); every arm is evaluated on the held-out 30 %: the index holds their findings,
their impressions are the queries. Several reports share word-for-word the same findings (templated normal
studies), so a hit counts when the retrieved findings text equals the query report's (normalised). Arms, same run:
dense (offline MiniLM, exact FAISS); sparse with the untrained tied lexicon head over the same MiniLM; sparse with
the LexLIP head trained on the 70 % (``objective: lexical``, MiniLM frozen, FLOPS regulariser); hybrid (dense +
trained sparse, min-max fusion, alpha 0.5, 100 candidates per side); and, as the classical lexical baseline, BM25
(k1 1.2, b 0.75, lower-cased word tokens). Index size: stored vectors / posting lists; latency per query (encoding
+ search), median.

Run: flock /tmp/medvl-heavy.lock .venv/bin/python benchmarks/bench_tasks_sparse_retrieval.py [--steps 150]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.resources import shared_data_dir  # noqa: E402
from medvl.tasks.cohort.items import normalise_text  # noqa: E402
from medvl.tasks.retrieval.text import TextIndex, TextIndexConfig, build_text_index  # noqa: E402

KS = (1, 5, 10)


def pairs(shared: Path) -> tuple[list[str], list[str]]:
    df = pd.read_csv(shared / "image_text" / "indiana_reports.csv").dropna(subset=["findings", "impression"])
    df = df[(df["findings"].str.strip() != "") & (df["impression"].str.strip() != "")]
    return df["findings"].astype(str).tolist(), df["impression"].astype(str).tolist()


def recall(ids: list[list[int]], gold: list[int], keys: list[str]) -> dict[str, float]:
    out = {}
    for k in KS:
        hits = [any(keys[d] == keys[g] for d in row[:k]) for row, g in zip(ids, gold, strict=True)]
        out[f"R@{k}"] = round(float(np.mean(hits)), 4)
    return out


class BM25:
    """Okapi BM25 over lower-cased word tokens (the classical lexical baseline)."""

    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75):
        from scipy import sparse

        self.vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for r, doc in enumerate(docs):
            words = re.findall(r"[a-z0-9]+", doc.lower())
            for w in set(words):
                rows.append(r)
                cols.append(self.vocab.setdefault(w, len(self.vocab)))
                vals.append(words.count(w))
        tf = sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(self.vocab)), dtype=np.float32)
        lengths = np.asarray(tf.sum(1)).ravel()
        df = np.bincount(tf.indices, minlength=len(self.vocab))
        self.idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5)).astype(np.float32)
        tf = tf.tocoo()
        norm = k1 * (1 - b + b * lengths[tf.row] / lengths.mean())
        w = tf.data * (k1 + 1) / (tf.data + norm) * self.idf[tf.col]
        self.weights = sparse.csc_matrix((w, (tf.row, tf.col)), shape=tf.shape)

    def search(self, query: str, k: int) -> list[int]:
        cols = [self.vocab[w] for w in set(re.findall(r"[a-z0-9]+", query.lower())) if w in self.vocab]
        scores = np.asarray(self.weights[:, cols].sum(1)).ravel() if cols else np.zeros(self.weights.shape[0])
        return np.argsort(-scores, kind="stable")[:k].tolist()

    def size_bytes(self) -> int:
        return int(self.weights.data.nbytes + self.weights.indices.nbytes + self.weights.indptr.nbytes)


def train_head(docs: list[str], queries: list[str], folder: Path, steps: int) -> tuple[Path, float]:
    """Train the LexLIP head on (impression, findings) pairs; returns the exported encoder and the seconds."""
    from medvl.train import TrainConfig, train

    pd.DataFrame({"q": queries, "d": docs}).to_csv(folder / "pairs.csv", index=False)  # temporary, deleted after
    cfg = TrainConfig.from_dict({
        "seed": 0, "threads": 1, "log_every": 25, "checkpoint_every": 10_000, "tensorboard": False,
        "model_config": {"towers": {"text": {"name": "hf-text", "options": {"max_length": 128}}}, "embed_dim": 8},
        "data": {"dataset": "text-pairs", "options": {"table": str(folder / "pairs.csv"), "query": "q",
                                                      "document": "d"}, "batch_size": 16},
        "stages": [{"name": "lexlip", "objective": "lexical", "inputs": ["query", "document"], "losses": [],
                    "steps": steps, "lr": 2e-3, "warmup_steps": 10, "objective_options": {"flops": 1e-4}}],
    })
    t0 = time.perf_counter()
    train(cfg, folder / "lexlip")
    return folder / "lexlip" / "objectives" / "lexlip", time.perf_counter() - t0


def run_arm(kind: str, docs: list[str], queries: list[str], folder: Path, name: str,
            lexical: Path | None = None) -> tuple[dict, list[list[int]]]:
    t0 = time.perf_counter()
    rec = build_text_index(docs, folder / name, TextIndexConfig(kind=kind, dense={"kind": "flat"},
                                                                 lexical=None if lexical is None else str(lexical)))
    build_s = time.perf_counter() - t0
    index = TextIndex(folder / name)
    ids, lat = [], []
    for q in queries:
        t1 = time.perf_counter()
        hits = index.search([q], k=max(KS))[0]
        lat.append(time.perf_counter() - t1)
        ids.append(hits["id"].tolist())
    size = (rec.get("dense", {}).get("dim", 0) * 4 * len(docs) if kind in ("dense", "hybrid") else 0) + \
        (rec.get("sparse", {}).get("bytes", 0) if kind in ("sparse", "hybrid") else 0)
    return {"build_s": round(build_s, 1), "index_mb": round(size / 2**20, 2),
            "latency_ms_p50": round(float(np.median(lat)) * 1000, 1),
            "sparse_nnz_per_doc": round(rec["sparse"]["nnz"] / len(docs), 1) if "sparse" in rec else None}, ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("shared data not found")
    all_docs, all_impressions = pairs(shared)
    order = np.random.default_rng(0).permutation(len(all_docs))
    cut = int(0.7 * len(order))
    train_idx, test_idx = np.sort(order[:cut]), np.sort(order[cut:])
    docs = [all_docs[i] for i in test_idx]
    queries = [all_impressions[i] for i in test_idx]
    keys = [normalise_text(d) for d in docs]
    gold = list(range(len(docs)))
    arms = {}
    with tempfile.TemporaryDirectory() as tmp:
        head, train_s = train_head([all_docs[i] for i in train_idx], [all_impressions[i] for i in train_idx],
                                   Path(tmp), args.steps)
        for name, kind, lexical in (("dense", "dense", None), ("sparse_untrained", "sparse", None),
                                    ("sparse_lexlip", "sparse", head), ("hybrid", "hybrid", head)):
            info, ids = run_arm(kind, docs, queries, Path(tmp), name, lexical)
            arms[name] = {**recall(ids, gold, keys), **info}
        arms["sparse_lexlip"]["train_s"] = round(train_s, 1)
    t0 = time.perf_counter()
    bm25 = BM25(docs)
    build_s = time.perf_counter() - t0
    lat, ids = [], []
    for q in queries:
        t1 = time.perf_counter()
        ids.append(bm25.search(q, max(KS)))
        lat.append(time.perf_counter() - t1)
    arms["bm25"] = {**recall(ids, gold, keys), "build_s": round(build_s, 2),
                    "index_mb": round(bm25.size_bytes() / 2**20, 2),
                    "latency_ms_p50": round(float(np.median(lat)) * 1000, 2)}
    figures = {"documents": len(docs), "queries": len(queries), "train_pairs": int(len(train_idx)),
               **{f"{k}_R@10": v["R@10"] for k, v in arms.items()}, "arms": arms}
    write_record(
        "tasks_sparse_retrieval", baseline="dense MiniLM FAISS (exact), same documents and queries",
        figures=figures, ratio=arms["hybrid"]["R@10"] / max(arms["dense"]["R@10"], 1e-9),
        ratio_meaning="hybrid R@10 / dense R@10", target="hybrid >= dense", passed=arms["hybrid"]["R@10"] >=
        arms["dense"]["R@10"], notes="IU impression -> findings of the same report (identical findings texts count as "
                                     "the same), held-out 30 %; LexLIP head trained on the other 70 %; BM25 for "
                                     "reference. 2 shared CPU cores, 1 thread.")


if __name__ == "__main__":
    main()
