"""Survival on TCGA (BRCA, BLCA, COADREAD, HNSC, STAD; age, sex, OncoTree subtype; overall survival), 5-fold CV:
medvl's Cox (SurvivalModel) vs lifelines CoxPHFitter fitted directly on the same folds, in one run, with the deep
Cox head beside them. Harrell C (lifelines) and Uno C (scikit-survival, IPCW from the training fold).

Reads ../shared/data/survival (skips when absent; never copied into the project).
Run: .venv/bin/python benchmarks/bench_tasks_survival.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.resources import shared_data_dir  # noqa: E402
from medvl.tasks.survival.metrics import harrell_c, uno_c  # noqa: E402
from medvl.tasks.survival.model import SurvivalModel  # noqa: E402
from medvl.tasks.survival.tables import read_survival_table  # noqa: E402

torch.set_num_threads(1)  # tiny full-batch problems: threads only contend on a shared machine

COHORTS = ("brca", "blca", "coadread", "hnsc", "stad")
COVARIATES = ["age", "is_female", "oncotree_code"]
PENALIZER = 0.01


def lifelines_fold(X: pd.DataFrame, t, e, train, test) -> np.ndarray:
    """The baseline as a lifelines user writes it: one-hot, drop constant columns, CoxPHFitter."""
    from lifelines import CoxPHFitter

    onehot = pd.get_dummies(X, columns=["oncotree_code"], drop_first=True, dtype=float)
    tr = onehot.iloc[train]
    keep = [c for c in tr.columns if tr[c].std() > 0]
    frame = tr[keep].assign(T=t[train], E=e[train].astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph = CoxPHFitter(penalizer=PENALIZER).fit(frame, "T", "E")
    return np.log(cph.predict_partial_hazard(onehot.iloc[test][keep]).to_numpy())


def run_cohort(path: Path) -> dict:
    from sklearn.model_selection import StratifiedKFold

    table = read_survival_table(path, "survival_months", "censorship", COVARIATES, event_is_censoring=True)
    X, t, e = table.X, table.time, table.event
    rows = {"medvl_cox": [], "lifelines": [], "medvl_deepcox": []}
    times = {k: 0.0 for k in rows}
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, e):
        y_tr, y_te = (t[train], e[train]), (t[test], e[test])
        fits = {
            "medvl_cox": lambda tr, te, y: SurvivalModel(penalizer=PENALIZER).fit(X.iloc[tr], y).predict(X.iloc[te]),
            "lifelines": lambda tr, te, y: lifelines_fold(X, t, e, tr, te),
            "medvl_deepcox": lambda tr, te, y: SurvivalModel(method="deepcox", hidden=16, epochs=150,
                                                             weight_decay=0.01, seed=0).fit(X.iloc[tr], y)
            .predict(X.iloc[te]),
        }
        for name, fn in fits.items():
            t0 = time.perf_counter()
            risk = fn(train, test, y_tr)
            times[name] += time.perf_counter() - t0
            rows[name].append({"harrell_c": harrell_c(t[test], e[test], risk), "uno_c": uno_c(y_tr, y_te, risk)})
    out = {"n": len(t), "events": int(e.sum())}
    for name, folds in rows.items():
        out[name] = {m: round(float(np.mean([f[m] for f in folds])), 4) for m in ("harrell_c", "uno_c")}
        out[name]["fit_s"] = round(times[name], 2)
    out["abs_diff_harrell"] = round(abs(out["medvl_cox"]["harrell_c"] - out["lifelines"]["harrell_c"]), 5)
    out["abs_diff_uno"] = round(abs(out["medvl_cox"]["uno_c"] - out["lifelines"]["uno_c"]), 5)
    return out


def main() -> None:
    data = shared_data_dir()
    if data is None or not (data / "survival").is_dir():
        print("shared/data/survival not found: skipping")
        return
    figures = {c: run_cohort(data / "survival" / f"survpath_tcga_{c}_survival.csv") for c in COHORTS}
    worst = max(max(f["abs_diff_harrell"], f["abs_diff_uno"]) for f in figures.values())
    ratio = np.mean([f["medvl_cox"]["fit_s"] / max(f["lifelines"]["fit_s"], 1e-9) for f in figures.values()])
    write_record("tasks_survival", baseline="lifelines CoxPHFitter on the same folds (penalizer 0.01)",
                 figures={"cohorts": figures, "max_abs_diff_c": worst, "covariates": COVARIATES,
                          "cv": "5-fold stratified by event, seed 0", "endpoint": "overall survival (months)"},
                 ratio=float(ratio), ratio_meaning="medvl Cox fit time / lifelines fit time (lower = faster)",
                 target="medvl Cox within 0.005 of lifelines (Harrell and Uno C)", passed=worst <= 0.005,
                 notes="one row per patient (first slide row); Uno C truncated at the 80th percentile of test "
                       "event times; deep head: 16 hidden units, 150 Adam steps, Efron ties")


if __name__ == "__main__":
    main()
