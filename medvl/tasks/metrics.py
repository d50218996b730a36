"""Classification and retrieval metrics on plain arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Balanced accuracy, AUC (binary, or macro one-vs-rest) and macro F1.

    Args:
        y_true: integer class labels [n].
        proba: class probabilities [n, C] (or [n] positive-class probabilities for a binary task).
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, float)
    if proba.ndim == 1:
        proba = np.stack([1 - proba, proba], axis=1)
    pred = proba.argmax(axis=1)
    out = {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, average="macro", labels=np.unique(y_true), zero_division=0)),
        "n": int(len(y_true)),
    }
    present = np.unique(y_true)
    if len(present) >= 2:
        if proba.shape[1] == 2:
            out["auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            # renormalise over the classes that occur so sklearn's one-vs-rest AUC accepts it
            sub = proba[:, present] / np.clip(proba[:, present].sum(axis=1, keepdims=True), 1e-12, None)
            out["auc"] = float(roc_auc_score(y_true, sub, multi_class="ovr", average="macro", labels=present))
    return out


def ranks_of_relevant(similarity: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """For each query row, the 1-based ranks of its relevant gallery items in descending-similarity order."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    rel_sorted = np.take_along_axis(relevant, order, axis=1)
    return [np.flatnonzero(row) + 1 for row in rel_sorted]


def retrieval_metrics(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k (a relevant item in the top k), median rank of the first relevant item, and mAP.

    Args:
        similarity: query x gallery scores [Q, G] (higher = more similar).
        relevant: boolean [Q, G]: which gallery items are correct for each query (e.g. same label, or the paired
            report for image->text). Queries with no relevant item are skipped.
        ks: cut-offs for recall.
    """
    similarity, relevant = np.asarray(similarity, float), np.asarray(relevant, bool)
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {similarity.shape} and relevant {relevant.shape} differ in shape")
    keep = relevant.any(axis=1)
    ranks = ranks_of_relevant(similarity[keep], relevant[keep])
    if not ranks:
        return {"n_queries": 0}
    first = np.array([r[0] for r in ranks])
    ap = [np.mean(np.arange(1, len(r) + 1) / r) for r in ranks]
    out = {f"R@{k}": float(np.mean(first <= k)) for k in ks}
    out.update({"median_rank": float(np.median(first)), "mAP": float(np.mean(ap)), "n_queries": int(len(ranks))})
    return out


def label_relevance(query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """Relevance matrix: a gallery item is relevant when it shares the query's label."""
    return np.asarray(query_labels)[:, None] == np.asarray(gallery_labels)[None, :]


def recall_curve(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 2, 5, 10, 20, 50)) -> dict:
    """Recall@k for a range of k (for the report's recall curve)."""
    ks = [k for k in ks if k <= similarity.shape[1]] or [similarity.shape[1]]
    m = retrieval_metrics(similarity, relevant, ks)
    return {k: m[f"R@{k}"] for k in ks}
