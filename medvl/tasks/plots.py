"""Report plots. Each function draws on a matplotlib ``ax`` and returns it; :func:`save_figure` writes a PNG
atomically. Matplotlib runs headless (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def new_axes(width: float = 4.5, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return fig, ax


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as PNG through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    from medvl.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def plot_km(km: dict[str, Any], ax, time_unit: str = ""):
    """Kaplan-Meier step curves from :func:`medvl.tasks.survival.km.kaplan_meier_by_risk`."""
    for g in km["groups"]:
        ax.step(g["times"], g["survival"], where="post", label=f"{g['name']} (n={g['n']}, events={g['events']})")
    p = km.get("logrank_p")
    title = "Kaplan-Meier by predicted risk"
    if p is not None and np.isfinite(p):
        title += f"\nlog-rank p = {p:.2g}"
    ax.set(title=title, xlabel=f"time{f' ({time_unit})' if time_unit else ''}", ylabel="survival probability",
           ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_roc(y_true: np.ndarray, scores: np.ndarray, ax, class_names: list[str] | None = None):
    """One-vs-rest ROC curves; ``scores`` is [n] for a binary task or [n, C]."""
    from sklearn.metrics import auc, roc_curve

    scores = np.asarray(scores, float)
    if scores.ndim == 1:
        scores = np.stack([1 - scores, scores], axis=1)
    n_classes = scores.shape[1]
    columns = [1] if n_classes == 2 else range(n_classes)
    for c in columns:
        positive = np.asarray(y_true) == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, scores[:, c])
        name = class_names[c] if class_names else f"class {c}"
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_calibration(y_true: np.ndarray, proba: np.ndarray, ax, n_bins: int = 10):
    """Reliability diagram of the top-class probability against its accuracy."""
    proba = np.asarray(proba, float)
    if proba.ndim == 1:
        proba = np.stack([1 - proba, proba], axis=1)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, n_bins - 1)
    xs, ys = [], []
    for b in range(n_bins):
        if (which == b).any():
            xs.append(conf[which == b].mean())
            ys.append(correct[which == b].mean())
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.plot(xs, ys, marker="o")
    ax.set(title="Calibration", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    return ax


def plot_recall_curve(recall_at: dict[int, float], ax, label: str | None = None):
    """Recall@k against k."""
    ks = sorted(recall_at)
    ax.plot(ks, [recall_at[k] for k in ks], marker="o", label=label)
    ax.set(title="Retrieval recall", xlabel="k", ylabel="recall@k", ylim=(0, 1.02), xscale="log")
    if label:
        ax.legend(fontsize=8)
    return ax
