"""The design matrix of a survival model: one-hot clinical covariates, standardisation, and a PCA of embeddings.

Fitted once on training rows and applied unchanged to new rows, so text categories seen at fit time map to the same
columns at prediction time and high-dimensional embeddings shrink to a few principal components (a Cox model on 512
raw dimensions and a few hundred events does not converge).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medvl.tasks.survival.tables import EMBEDDING_PREFIX


class Design:
    """Fitted transform from a covariate frame to a numeric matrix.

    Args:
        pca_components: principal components kept from the ``emb_*`` columns (None keeps them all).
    """

    def __init__(self, pca_components: int | None = 16):
        self.pca_components = pca_components

    def fit(self, X: pd.DataFrame) -> Design:
        X = _as_frame(X)
        self.embedding_columns_ = [c for c in X.columns if str(c).startswith(EMBEDDING_PREFIX)]
        clinical = X.drop(columns=self.embedding_columns_)
        self.categorical_ = {
            c: sorted(map(str, clinical[c].dropna().unique()))
            for c in clinical.columns
            if not pd.api.types.is_numeric_dtype(clinical[c]) or pd.api.types.is_bool_dtype(clinical[c])
        }
        onehot = self._clinical(clinical)
        std = onehot.std(axis=0, ddof=0).to_numpy()
        keep = std > 1e-12  # constant columns carry no information and break Newton steps
        self.clinical_columns_ = list(onehot.columns[keep])
        self.mean_ = onehot.to_numpy(float)[:, keep].mean(axis=0)
        self.scale_ = std[keep]
        self._fit_pca(X[self.embedding_columns_].to_numpy(float))
        self.feature_names_ = self.clinical_columns_ + [f"pc{i + 1}" for i in range(self.n_pcs_)]
        return self

    def _fit_pca(self, emb: np.ndarray) -> None:
        self.n_pcs_ = 0
        self.emb_mean_ = np.zeros(emb.shape[1])
        self.components_ = np.zeros((0, emb.shape[1]))
        self.pc_scale_ = np.zeros(0)
        if emb.shape[1] == 0:
            return
        self.emb_mean_ = emb.mean(axis=0)
        centred = emb - self.emb_mean_
        k = emb.shape[1] if self.pca_components is None else min(self.pca_components, *emb.shape)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        self.components_ = vt[:k]
        scores = centred @ self.components_.T
        self.pc_scale_ = np.where(scores.std(axis=0) > 1e-12, scores.std(axis=0), 1.0)
        self.n_pcs_ = k

    def _clinical(self, clinical: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for c in clinical.columns:
            if c in self.categorical_:
                values = clinical[c].astype(str)
                # first level is the reference category
                for level in self.categorical_[c][1:]:
                    parts.append(pd.Series((values == level).astype(float).to_numpy(), name=f"{c}={level}"))
            else:
                parts.append(pd.Series(clinical[c].astype(float).to_numpy(), name=str(c)))
        return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=range(len(clinical)))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        X = _as_frame(X)
        missing = [c for c in [*self.categorical_, *self.embedding_columns_] if c not in X.columns]
        if missing:
            raise ValueError(f"missing column(s) {missing[:3]} seen at fit time")
        clinical = self._clinical(X.drop(columns=[c for c in X.columns if str(c).startswith(EMBEDDING_PREFIX)]))
        clinical = clinical.reindex(columns=self.clinical_columns_, fill_value=0.0)
        parts = [(clinical.to_numpy(float) - self.mean_) / self.scale_]
        if self.n_pcs_:
            emb = X[self.embedding_columns_].to_numpy(float)
            parts.append(((emb - self.emb_mean_) @ self.components_.T) / self.pc_scale_)
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(X), 0))

    # ------------------------------------------------------------ persistence (JSON + arrays; no pickle)
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "pca_components": self.pca_components,
            "embedding_columns": self.embedding_columns_,
            "categorical": self.categorical_,
            "clinical_columns": self.clinical_columns_,
            "n_pcs": self.n_pcs_,
        }
        arrays = {"mean": self.mean_, "scale": self.scale_, "emb_mean": self.emb_mean_,
                  "components": self.components_, "pc_scale": self.pc_scale_}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Design:
        d = cls(meta["pca_components"])
        d.embedding_columns_ = list(meta["embedding_columns"])
        d.categorical_ = {k: list(v) for k, v in meta["categorical"].items()}
        d.clinical_columns_ = list(meta["clinical_columns"])
        d.n_pcs_ = int(meta["n_pcs"])
        d.mean_, d.scale_ = arrays["mean"], arrays["scale"]
        d.emb_mean_, d.components_, d.pc_scale_ = arrays["emb_mean"], arrays["components"], arrays["pc_scale"]
        d.feature_names_ = d.clinical_columns_ + [f"pc{i + 1}" for i in range(d.n_pcs_)]
        return d


def _as_frame(X) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
