"""Survival models with the scikit-learn contract: Cox proportional hazards (lifelines) and a deep Cox head (torch).

Both share one :class:`~medvl.tasks.survival.design.Design` (one-hot clinical covariates, standardisation, PCA of
embedding columns ``emb_*``) and predict a risk score (log relative hazard; higher = earlier event). Individual survival
curves come from the Breslow baseline hazard. Models save to a folder as JSON + safetensors (no pickle).

Example:
    >>> model = SurvivalModel(method="cox", penalizer=0.01).fit(table.X, table.y)
    >>> model.score(table.X, table.y)           # Harrell's C
    >>> times, surv = model.predict_survival_function(table.X[:3])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medvl.config import Config, dataclass
from medvl.errors import ConfigError, InputError
from medvl.tasks.survival.baseline import breslow_baseline, survival_at
from medvl.tasks.survival.design import Design
from medvl.tasks.survival.tables import split_surv

MODEL_FILE = "survival_model.json"
ARRAYS_FILE = "survival_model.safetensors"


@dataclass
class SurvivalConfig(Config):
    """Parameters of :class:`SurvivalModel` (``medvl survival fit`` builds one from its options).

    Attributes:
        method: "cox" (lifelines CoxPHFitter, Efron ties) or "deepcox" (MLP head trained on the partial likelihood).
        penalizer: ridge/elastic-net strength of the Cox fit (lifelines ``penalizer``).
        l1_ratio: elastic-net mix of the Cox fit (0 = ridge).
        pca_components: principal components kept from embedding columns (None = all).
        ties: tie handling of the deep head's partial likelihood: "efron" or "breslow".
        hidden: hidden width of the deep head (0 = a linear Cox model trained by gradient descent).
        dropout: dropout of the deep head.
        epochs: full-batch Adam steps of the deep head.
        lr: learning rate of the deep head.
        weight_decay: L2 penalty of the deep head.
        seed: seed of the deep head's initialisation and dropout.
    """

    method: Literal["cox", "deepcox"] = "cox"
    penalizer: float = 0.01
    l1_ratio: float = 0.0
    pca_components: int | None = 16
    ties: Literal["efron", "breslow"] = "efron"
    hidden: int = 32
    dropout: float = 0.1
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 0.001
    seed: int = 0

    def validate(self) -> None:
        if self.method == "cox" and self.ties != "efron":
            raise ConfigError("SurvivalConfig.ties: method 'cox' fits with lifelines (Efron ties); use method "
                              "'deepcox' for Breslow ties")
        if self.penalizer < 0:
            raise ConfigError(f"SurvivalConfig.penalizer: must be >= 0, got {self.penalizer}")
        if not 0 <= self.l1_ratio <= 1:
            raise ConfigError(f"SurvivalConfig.l1_ratio: must be in [0, 1], got {self.l1_ratio}")
        if self.pca_components is not None and self.pca_components < 1:
            raise ConfigError(f"SurvivalConfig.pca_components: must be >= 1 (or null for all), got "
                              f"{self.pca_components}")
        if self.epochs < 1 or self.lr <= 0 or not 0 <= self.dropout < 1 or self.hidden < 0:
            raise ConfigError("deep head: epochs >= 1, lr > 0, 0 <= dropout < 1, hidden >= 0")


class SurvivalModel:
    """Cox or deep-Cox survival model on clinical covariates and/or embeddings (sklearn/lifelines contract).

    The one parameter is a :class:`SurvivalConfig` (each setting is declared there, once); keyword overrides replace
    fields of it (``SurvivalModel(method="deepcox")``). ``get_params``/``set_params`` make it work with
    ``sklearn.base.clone``. Fitted attributes end in ``_``: ``design_``, ``coef_`` (Cox), ``net_`` (deep head),
    ``baseline_times_``, ``baseline_cumhaz_``, ``summary_`` (Cox), ``train_c_``.
    """

    def __init__(self, config: SurvivalConfig | None = None, **overrides: Any):
        base = config if config is not None else SurvivalConfig()
        self.config = base.replace(**overrides) if overrides else base

    @classmethod
    def from_config(cls, config: SurvivalConfig) -> SurvivalModel:
        return cls(config)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"config": self.config}

    def set_params(self, **params: Any) -> SurvivalModel:
        config = params.pop("config", self.config)
        self.config = config.replace(**params) if params else config
        return self

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y) -> SurvivalModel:
        """Fit on covariates ``X`` (DataFrame; ``emb_*`` columns are embeddings) and outcome ``y``."""
        cfg = self.config
        time, event = split_surv(y)
        if not event.any():
            raise InputError(None, "all rows are censored: a survival model needs at least one event")
        self.design_ = Design(cfg.pca_components).fit(X)
        Z = self.design_.transform(X)
        if Z.shape[1] == 0 and cfg.method == "cox":
            raise InputError(None, "no usable covariates (every column is constant); name covariates or embeddings")
        _FITTERS[cfg.method](self, cfg, Z, time, event)
        eta = self._eta(Z)
        self.baseline_times_, self.baseline_cumhaz_ = breslow_baseline(time, event, eta)
        from medvl.tasks.survival.metrics import harrell_c

        self.train_c_ = harrell_c(time, event, eta)
        self.train_risk_median_ = float(np.median(eta))  # cut point of the low/high risk groups
        self.n_samples_, self.n_events_ = int(len(time)), int(event.sum())
        return self

    def _fit_cox(self, cfg: SurvivalConfig, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> None:
        import warnings

        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError

        names = self.design_.feature_names_
        frame = pd.DataFrame(Z, columns=names).assign(_time=time, _event=event.astype(int))
        cph = CoxPHFitter(penalizer=cfg.penalizer, l1_ratio=cfg.l1_ratio)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cph.fit(frame, duration_col="_time", event_col="_event")
        except ConvergenceError as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(None, f"the Cox fit did not converge ({first}); raise --penalizer or lower --pca") \
                from None
        self.coef_ = cph.params_.reindex(names).to_numpy(float)
        self.summary_ = cph.summary[["coef", "exp(coef)", "se(coef)", "p"]].reindex(names).rename_axis("covariate")
        self.net_ = None

    def _fit_deep(self, cfg: SurvivalConfig, Z: np.ndarray, time: np.ndarray, event: np.ndarray) -> None:
        import torch

        from medvl.losses.cox import cox_nll

        zt = torch.as_tensor(Z, dtype=torch.float32)
        tt, et = torch.as_tensor(time), torch.as_tensor(event)
        with torch.random.fork_rng():  # seeded init and dropout without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            net = _make_head(Z.shape[1], cfg.hidden, cfg.dropout)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            net.train()
            for _ in range(cfg.epochs):
                opt.zero_grad()
                loss = cox_nll(net(zt).squeeze(-1).double(), tt, et, cfg.ties)
                loss.backward()
                opt.step()
        net.eval()
        self.net_, self.coef_, self.final_loss_ = net, None, float(loss.detach())
        self.summary_ = None

    # ------------------------------------------------------------------ prediction
    def _eta(self, Z: np.ndarray) -> np.ndarray:
        if self.net_ is None:
            return Z @ self.coef_
        import torch

        with torch.no_grad():
            return self.net_(torch.as_tensor(Z, dtype=torch.float32)).squeeze(-1).double().numpy()

    def _check_fitted(self) -> None:
        if not hasattr(self, "design_"):
            raise RuntimeError("this SurvivalModel is not fitted yet; call fit() first")

    def predict(self, X) -> np.ndarray:
        """Risk score (log relative hazard) per row; higher means an earlier expected event."""
        self._check_fitted()
        return self._eta(self.design_.transform(X))

    def predict_survival_function(self, X, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Survival probabilities ``[n, len(times)]`` (times default to the training event times)."""
        self._check_fitted()
        times = self.baseline_times_ if times is None else np.asarray(times, float)
        return times, survival_at(times, self.baseline_times_, self.baseline_cumhaz_, self.predict(X))

    def score(self, X, y) -> float:
        """Harrell's C on ``(X, y)``."""
        from medvl.tasks.survival.metrics import harrell_c

        time, event = split_surv(y)
        return harrell_c(time, event, self.predict(X))

    def coefficients(self) -> dict[str, float] | None:
        """Cox coefficients by design column (None for a deep head)."""
        if self.coef_ is None:
            return None
        return {n: float(c) for n, c in zip(self.design_.feature_names_, self.coef_, strict=True)}

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``survival_model.json`` and ``survival_model.safetensors`` atomically into ``folder``."""
        from safetensors.numpy import save_file

        from medvl import __version__
        from medvl.atomic import atomic_path, atomic_write_json

        self._check_fitted()
        folder = Path(folder)
        meta, arrays = self.design_.state()
        arrays = {f"design.{k}": np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}
        arrays["baseline_times"], arrays["baseline_cumhaz"] = self.baseline_times_, self.baseline_cumhaz_
        if self.net_ is not None:
            arrays.update({f"net.{k}": v.detach().numpy().copy() for k, v in self.net_.state_dict().items()})
        with atomic_path(folder / ARRAYS_FILE) as tmp:
            save_file(arrays, str(tmp))
        summary = None if self.summary_ is None else self.summary_.to_dict(orient="split")
        record = {"params": self.config.to_dict(), "design": meta, "summary": summary,
                  "n_inputs": len(self.design_.feature_names_),
                  "coefficients": self.coefficients(), "train_harrell_c": self.train_c_,
                  "train_risk_median": self.train_risk_median_,
                  "n_samples": self.n_samples_, "n_events": self.n_events_, "medvl_version": __version__,
                  **(extra or {})}
        atomic_write_json(folder / MODEL_FILE, record)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SurvivalModel:
        """Load a model saved by :meth:`save`."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file() or not (folder / ARRAYS_FILE).is_file():
            raise InputError(folder, f"not a survival model folder (expected {MODEL_FILE} and {ARRAYS_FILE})")
        record = json.loads((folder / MODEL_FILE).read_text())
        arrays = load_file(str(folder / ARRAYS_FILE))
        model = cls(SurvivalConfig.from_dict(record["params"], source=str(folder / MODEL_FILE)))
        design_arrays = {k.removeprefix("design."): v for k, v in arrays.items() if k.startswith("design.")}
        model.design_ = Design.from_state(record["design"], design_arrays)
        model.baseline_times_, model.baseline_cumhaz_ = arrays["baseline_times"], arrays["baseline_cumhaz"]
        model.train_c_, model.n_samples_, model.n_events_ = (record["train_harrell_c"], record["n_samples"],
                                                             record["n_events"])
        model.record_ = record
        model.train_risk_median_ = float(record["train_risk_median"])
        summary = record.get("summary")
        model.summary_ = None if summary is None else pd.DataFrame(**summary).rename_axis("covariate")
        if record["coefficients"] is not None:
            model.coef_, model.net_ = np.array([record["coefficients"][n] for n in model.design_.feature_names_]), None
        else:
            import torch

            net = _make_head(record["n_inputs"], model.config.hidden, model.config.dropout)
            net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("net.")})
            model.net_, model.coef_ = net.eval(), None
        return model


def _make_head(n_in: int, hidden: int, dropout: float):
    from torch import nn

    if hidden == 0:
        return nn.Linear(n_in, 1, bias=False)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1, bias=False))


_FITTERS: dict[str, Callable[..., None]] = {"cox": SurvivalModel._fit_cox, "deepcox": SurvivalModel._fit_deep}


def cross_validate_survival(config: SurvivalConfig, X: pd.DataFrame, y, cv: int = 5, seed: int = 0) -> dict[str, Any]:
    """K-fold cross-validation stratified by event; per-fold and mean metrics plus out-of-fold risk.

    Returns:
        ``{"folds": [metrics...], "mean": {...}, "std": {...}, "oof_risk": ndarray}``.
    """
    from sklearn.model_selection import StratifiedKFold

    from medvl.tasks.survival.metrics import survival_metrics

    time, event = split_surv(y)
    if cv < 2 or cv > int(event.sum()):
        raise ConfigError(f"cv must be between 2 and the number of events ({int(event.sum())}), got {cv}")
    X = X.reset_index(drop=True)
    oof = np.zeros(len(time))
    folds = []
    splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(time)), event):
        model = SurvivalModel.from_config(config).fit(X.iloc[train], (time[train], event[train]))
        risk = model.predict(X.iloc[test])
        oof[test] = risk

        def surv_fn(times, model=model, test=test):
            return model.predict_survival_function(X.iloc[test], times)[1]

        folds.append(survival_metrics((time[train], event[train]), (time[test], event[test]), risk, surv_fn))
    keys = sorted(set.intersection(*(set(f) for f in folds)) - {"n", "events", "tau"})
    mean = {k: float(np.mean([f[k] for f in folds])) for k in keys}
    std = {k: float(np.std([f[k] for f in folds])) for k in keys}
    return {"folds": folds, "mean": mean, "std": std, "oof_risk": oof}
