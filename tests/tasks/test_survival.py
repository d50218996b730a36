"""Survival models: Cox parity with lifelines, the deep head, persistence, embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medvl.errors import InputError
from medvl.tasks.survival.metrics import survival_metrics
from medvl.tasks.survival.model import SurvivalConfig, SurvivalModel, cross_validate_survival
from medvl.tasks.survival.tables import read_survival_table

COVS = ["age", "tsize", "pnodes", "tgrade", "horTh", "menostat"]


def test_cox_matches_lifelines_directly(gbsg2):
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    model = SurvivalModel(penalizer=0.0).fit(gbsg2[COVS], (gbsg2["time"], gbsg2["event"]))
    frame = pd.get_dummies(gbsg2[COVS], drop_first=True, dtype=float).assign(T=gbsg2["time"], E=gbsg2["event"])
    cph = CoxPHFitter().fit(frame, "T", "E")
    c_ref = concordance_index(frame["T"], -cph.predict_partial_hazard(frame), frame["E"])
    assert model.train_c_ == pytest.approx(c_ref, abs=1e-6)
    # per-SD coefficient of the nodes equals lifelines' per-unit coefficient times the SD
    sd = gbsg2["pnodes"].std(ddof=0)
    assert model.coefficients()["pnodes"] == pytest.approx(cph.params_["pnodes"] * sd, rel=1e-4)


def test_deep_head_learns_and_round_trips(gbsg2, tmp_path):
    y = (gbsg2["time"].to_numpy(), gbsg2["event"].to_numpy())
    for ties in ("efron", "breslow"):
        model = SurvivalModel(method="deepcox", ties=ties, epochs=100).fit(gbsg2[COVS], y)
        assert model.train_c_ > 0.65
    model.save(tmp_path / "m")
    again = SurvivalModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict(gbsg2[COVS]), model.predict(gbsg2[COVS]), rtol=1e-6)
    times, surv = again.predict_survival_function(gbsg2[COVS].iloc[:4], [365, 1000, 2000])
    assert surv.shape == (4, 3) and np.all(np.diff(surv, axis=1) <= 0) and np.all((surv > 0) & (surv < 1))


def test_high_dimensional_embeddings_converge_with_pca(gbsg2, gbsg2_embeddings, gbsg2_csv):
    table = read_survival_table(gbsg2_csv, "time", "event", ["age"], embeddings=gbsg2_embeddings)
    assert table.X.shape == (686, 65) and table.encoder == "test-enc"
    model = SurvivalModel(pca_components=8).fit(table.X, table.y)
    assert model.design_.feature_names_[-1] == "pc8"
    assert model.train_c_ > 0.6  # the embeddings carry the nodal status


def test_cross_validation_reports_all_metrics(gbsg2):
    cfg = SurvivalConfig()
    res = cross_validate_survival(cfg, gbsg2[COVS], (gbsg2["time"], gbsg2["event"]), cv=3, seed=1)
    assert set(res["mean"]) == {"harrell_c", "uno_c", "mean_auc", "integrated_brier"}
    assert 0.6 < res["mean"]["harrell_c"] < 0.8 and 0.1 < res["mean"]["integrated_brier"] < 0.25
    again = cross_validate_survival(cfg, gbsg2[COVS], (gbsg2["time"], gbsg2["event"]), cv=3, seed=1)
    assert again["mean"] == res["mean"]


def test_metrics_of_a_perfect_and_a_reversed_risk(gbsg2):
    y = (gbsg2["time"].to_numpy(), gbsg2["event"].to_numpy())
    perfect = -gbsg2["time"].to_numpy()
    assert survival_metrics(y, y, perfect)["harrell_c"] > 0.99
    assert survival_metrics(y, y, -perfect)["harrell_c"] < 0.01


def test_table_errors(tmp_path, gbsg2):
    bad = gbsg2.copy()
    bad.loc[3, "time"] = -1
    bad.to_csv(tmp_path / "neg.csv", index=False)
    with pytest.raises(InputError, match="negative"):
        read_survival_table(tmp_path / "neg.csv", "time", "event", ["age"])
    bad.loc[3, "time"] = np.nan
    bad.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(InputError, match="missing time"):
        read_survival_table(tmp_path / "nan.csv", "time", "event", ["age"])
    cens = gbsg2.assign(event=0)
    cens.to_parquet(tmp_path / "cens.parquet")
    with pytest.raises(InputError, match="censored"):
        read_survival_table(tmp_path / "cens.parquet", "time", "event", ["age"])


def test_tcga_brca_cox_with_subtype(shared_data):
    path = shared_data / "survival" / "survpath_tcga_brca_survival.csv"
    table = read_survival_table(path, "survival_months", "censorship", ["age", "oncotree_code"],
                                event_is_censoring=True)
    assert len(table) == 871 and int(table.event.sum()) == 102  # one row per patient, as MANIFEST counts
    model = SurvivalModel().fit(table.X, table.y)
    assert model.design_.feature_names_ == ["age", "oncotree_code=ILC"] and 0.55 < model.train_c_ < 0.8
