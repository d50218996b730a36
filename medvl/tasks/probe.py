"""Linear probes and few-shot evaluation on frozen embeddings (scikit-learn logistic regression)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medvl.tasks.metrics import classification_metrics


class LinearProbe:
    """Standardised features + multinomial logistic regression (sklearn contract).

    Args:
        C: inverse L2 strength.
        max_iter: solver iterations.
        class_weight: "balanced" to reweight rare classes, or None.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000, class_weight: str | None = "balanced"):
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipeline_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
        ).fit(np.asarray(X, float), np.asarray(y))
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(np.asarray(X, float))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict(np.asarray(X, float))

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Balanced accuracy, AUC and macro F1 on ``(X, y)``."""
        y = np.asarray(y)
        index = {c: i for i, c in enumerate(self.classes_)}
        return classification_metrics(np.array([index.get(v, -1) for v in y]), self.predict_proba(X))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return self.evaluate(X, y)["balanced_accuracy"]


def sample_k_per_class(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` examples per class (all of a class when it has fewer)."""
    y = np.asarray(y)
    picks = [rng.choice(np.flatnonzero(y == c), size=min(k, int((y == c).sum())), replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def few_shot(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
             shots: tuple[int, ...] = (1, 2, 4, 8, 16), repeats: int = 5, seed: int = 0,
             C: float = 1.0) -> dict[str, Any]:
    """Few-shot linear probes: for each k, ``repeats`` draws of k training examples per class.

    Returns:
        ``{k: {"mean": {metric: value}, "std": {...}, "runs": [...]}}`` with k as a string key.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for k in shots:
        runs = []
        for _ in range(repeats):
            idx = sample_k_per_class(y_train, k, rng)
            runs.append(LinearProbe(C=C).fit(X_train[idx], y_train[idx]).evaluate(X_test, y_test))
        keys = [m for m in ("balanced_accuracy", "auc", "f1_macro") if all(m in r for r in runs)]
        out[str(k)] = {"mean": {m: float(np.mean([r[m] for r in runs])) for m in keys},
                       "std": {m: float(np.std([r[m] for r in runs])) for m in keys}, "runs": runs}
    return out
