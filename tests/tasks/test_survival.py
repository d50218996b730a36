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


# ---------------------------------------------------------------------------------------- issue 16, item 5
def test_harrell_c_counts_rounding_noise_as_ties():
    """Risks one ulp apart are one tie: lifelines on the noisy risks counts them as ordered, a wrong C."""
    from lifelines.utils import concordance_index

    from medvl.tasks.survival.metrics import harrell_c

    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 4.0])  # tied times too
    event = np.array([1, 1, 0, 1, 1, 0], dtype=bool)
    exact = np.array([0.3, 0.3, 0.3, 0.3, -0.1, -0.1])  # tied covariates -> tied risks
    noisy = exact.copy()
    for _ in range(3):  # rounding that happens to order the tied patients by their time
        noisy[:3] = np.nextafter(noisy[:3], np.inf)
        noisy[0] = np.nextafter(noisy[0], np.inf)
    reference = concordance_index(time, -exact, event)
    assert concordance_index(time, -noisy, event) != pytest.approx(reference, abs=1e-9)  # the wrong result
    assert harrell_c(time, event, noisy) == pytest.approx(reference, abs=1e-12)


def test_model_c_equals_lifelines_on_tied_covariates_and_times():
    """A table where patients share covariates and follow-up times: the model's C is lifelines' C on the exact
    (one value per covariate pattern) risks."""
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(0)
    n = 871  # the size at which the BLAS product rounded identical rows apart on the reporting machine
    X = pd.DataFrame({"is_female": rng.choice([1.0, 0.0], n, p=[0.98, 0.02]),
                      "subtype": rng.choice(["IDC", "ILC"], n, p=[0.8, 0.2])})
    time, event = rng.integers(1, 60, n).astype(float), rng.random(n) < 0.3
    model = SurvivalModel().fit(X, (time, event))
    risk = model.predict(X)
    pattern = X.astype(str).agg("|".join, axis=1).to_numpy()
    exact = pd.Series(risk).groupby(pattern).transform("first").to_numpy()
    reference = concordance_index(time, -exact, event)
    assert model.train_c_ == pytest.approx(reference, abs=1e-12)
    assert model.score(X, (time, event)) == pytest.approx(reference, abs=1e-12)


def test_model_takes_its_config_and_clones():
    from sklearn.base import clone

    cfg = SurvivalConfig(method="deepcox", epochs=5, hidden=4)
    model = SurvivalModel(cfg, seed=3)
    assert model.config == cfg.replace(seed=3) and model.get_params() == {"config": cfg.replace(seed=3)}
    twin = clone(model)
    assert twin is not model and twin.config == model.config
    assert model.set_params(epochs=7).config.epochs == 7


def test_summary_survives_save_and_load(gbsg2, tmp_path):
    model = SurvivalModel().fit(gbsg2[COVS], (gbsg2["time"], gbsg2["event"]))
    model.save(tmp_path / "m")
    again = SurvivalModel.load(tmp_path / "m")
    assert list(again.summary_.index) == list(model.summary_.index)
    pd.testing.assert_frame_equal(again.summary_, model.summary_)
    assert again.config == model.config


def test_metrics_accept_test_cases_followed_longer_than_the_training_cohort():
    """A test patient whose event comes after the last training time (scikit-survival refuses such times for its
    censoring weights) is censored just inside the training follow-up: every metric is computed, and moving that
    event further out changes none of them."""
    rng = np.random.default_rng(0)
    t_train = rng.uniform(1, 100, 80)
    y_train = (t_train, rng.random(80) < 0.7)
    t_test, e_test = rng.uniform(1, 90, 40), rng.random(40) < 0.7
    risk = -t_test + rng.normal(0, 20, 40)
    t_test[0], e_test[0] = 150.0, True
    first = survival_metrics(y_train, (t_test, e_test), risk)
    t_test[0] = 400.0
    later = survival_metrics(y_train, (t_test, e_test), risk)
    assert {"uno_c", "mean_auc", "harrell_c"} <= set(first)
    assert all(np.isfinite(v) for v in first.values())
    assert first == later
    assert 0.5 < first["mean_auc"] <= 1.0 and first["tau"] < 100
