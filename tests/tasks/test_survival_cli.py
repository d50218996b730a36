"""``medvl survival`` as a batch user runs it: JSON output, saved model, predictions, clear errors."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import assert_clean_error, run_cli
from tests.tasks.conftest import TEST_ENCODER

COVS = "age,tsize,pnodes,tgrade,horTh"


def test_fit_predict_evaluate(gbsg2_csv, tmp_path):
    out = tmp_path / "model"
    fit = run_cli("survival", "fit", "--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates", COVS,
                  "--cv", "3", "--seed", "0", "--out", out, "--json")
    assert fit.returncode == 0, fit.stderr
    rec = fit.json()
    assert rec["n"] == 686 and rec["events"] == 299
    assert rec["coefficients"]["pnodes"] > 0 and rec["coefficients"]["horTh=yes"] < 0  # nodes up, hormones down
    assert 0.62 < rec["train_harrell_c"] < 0.75 and 0.6 < rec["cv"]["mean"]["uno_c"] < 0.75
    assert (out / "survival_model.json").is_file() and (out / "survival_model.safetensors").is_file()

    pred = run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--times", "365,1825",
                   "--out", tmp_path / "pred.csv", "--json")
    assert pred.returncode == 0, pred.stderr
    frame = pd.read_csv(tmp_path / "pred.csv")
    assert len(frame) == 686 and "case_id" not in frame.columns and "id" not in frame.columns
    assert (frame["survival_at_365"] >= frame["survival_at_1825"]).all()
    assert set(frame["risk_group"]) == {"low", "high"}

    ev = run_cli("survival", "evaluate", "--model", out, "--table", gbsg2_csv, "--time", "time", "--event", "event",
                 "--covariates", COVS, "--report", tmp_path / "report", "--json")
    assert ev.returncode == 0, ev.stderr
    rec = ev.json()
    assert rec["logrank_p"] < 1e-5 and {"harrell_c", "uno_c", "mean_auc", "integrated_brier"} <= set(rec["metrics"])
    assert (tmp_path / "report" / "kaplan_meier.png").stat().st_size > 5000
    assert json.loads((tmp_path / "report" / "survival_metrics.json").read_text())["metrics"] == rec["metrics"]


def test_bad_tables_give_one_clear_error(gbsg2, gbsg2_csv, tmp_path):
    r = run_cli("survival", "fit", "--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates",
                "age,grade_x", "--out", tmp_path / "m")
    assert_clean_error(r, "missing column", "grade_x")
    gbsg2.assign(event=0).to_csv(tmp_path / "cens.csv", index=False)
    r = run_cli("survival", "fit", "--table", tmp_path / "cens.csv", "--time", "time", "--event", "event",
                "--covariates", "age", "--out", tmp_path / "m")
    assert_clean_error(r, "censored")
    assert not (tmp_path / "m").exists()


def test_embeddings_of_another_width_are_refused(gbsg2, gbsg2_csv, gbsg2_embeddings, tmp_path):
    from medvl.io.embeddings import EmbeddingSet, save_embeddings

    out = tmp_path / "m"
    fit = run_cli("survival", "fit", "--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates", "age",
                  "--embeddings", gbsg2_embeddings, "--pca", "4", "--out", out, "--json")
    assert fit.returncode == 0, fit.stderr
    assert fit.json()["inputs"] == ["age", "pc1", "pc2", "pc3", "pc4"]
    other = tmp_path / "other.npz"
    save_embeddings(other, EmbeddingSet(gbsg2[["age", "tsize"]].to_numpy(float), ids=gbsg2["case_id"].to_numpy(),
                                        provenance=TEST_ENCODER))
    r = run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--embeddings", other)
    assert_clean_error(r, "2-d", "64-d")


# ---------------------------------------------------------------------------------------- issue 16, item 5
def test_evaluate_uses_the_event_coding_saved_with_the_model(gbsg2, tmp_path):
    """Fitted on a censoring column, evaluated without the flag: the saved coding is used, not inverted events."""
    table = tmp_path / "cens.csv"
    gbsg2.assign(censored=1 - gbsg2["event"]).drop(columns=["event"]).to_csv(table, index=False)
    out = tmp_path / "m"
    fit = run_cli("survival", "fit", "--table", table, "--time", "time", "--event", "censored", "--event-is-censoring",
                  "--time-unit", "days", "--covariates", COVS, "--out", out, "--json")
    assert fit.returncode == 0, fit.stderr
    base = ["survival", "evaluate", "--model", out, "--table", table, "--json"]
    with_flag = run_cli(*base, "--event-is-censoring")
    without = run_cli(*base)
    assert with_flag.returncode == 0 and without.returncode == 0, without.stderr
    c = without.json()["metrics"]["harrell_c"]
    assert c == with_flag.json()["metrics"]["harrell_c"] == fit.json()["train_harrell_c"] > 0.6  # not 1 - C
    assert without.json()["event_is_censoring"] is True and without.json()["time_unit"] == "days"
    r = run_cli(*base, "--event-is-event")
    assert_clean_error(r, "--event-is-censoring", "1 = censored")
    r = run_cli(*base, "--time-unit", "months")
    assert_clean_error(r, "days", "--time-unit")


def test_keep_ids_works_under_json(gbsg2_csv, tmp_path):
    out = tmp_path / "m"
    assert run_cli("survival", "fit", "--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates",
                   "age", "--out", out).returncode == 0
    rec = run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--keep-ids", "--json").json()
    assert rec["predictions"][0]["id"] == "case0000" and len(rec["predictions"]) == 686
    rec = run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--json").json()
    assert "id" not in rec["predictions"][0]


def test_settings_come_from_a_config_file_and_flags_override_it(gbsg2_csv, tmp_path):
    cfg = tmp_path / "cox.yaml"
    cfg.write_text("method: cox\npenalizer: 5.0\n")
    args = ["survival", "fit", "--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates", COVS,
            "--config", cfg, "--json"]
    strong = run_cli(*args, "--out", tmp_path / "a").json()
    weak = run_cli(*args, "--penalizer", "0.0", "--out", tmp_path / "b").json()
    assert abs(strong["coefficients"]["pnodes"]) < abs(weak["coefficients"]["pnodes"])
    saved = json.loads((tmp_path / "a" / "survival_model.json").read_text())["params"]
    assert saved["penalizer"] == 5.0 and saved["pca_components"] == 16  # the rest: SurvivalConfig's defaults
    r = run_cli(*args, "--penalizer", "-1", "--out", tmp_path / "c")
    assert_clean_error(r, "--penalizer")
    assert "SurvivalConfig" not in r.stderr
def test_embeddings_of_another_encoder_or_without_a_record_are_refused(gbsg2, gbsg2_csv, gbsg2_embeddings,
                                                                       tmp_path):
    """Issue 16: vectors are matched to the model by content, not by width or name; no record, no use (unless
    trusted, and then the record says so)."""
    from medvl.io.embeddings import EmbeddingSet, load_embeddings, save_embeddings
    from medvl.provenance import ModelPrint

    out = tmp_path / "m"
    common = ("--table", gbsg2_csv, "--time", "time", "--event", "event", "--covariates", "age")
    assert run_cli("survival", "fit", *common, "--embeddings", gbsg2_embeddings, "--pca", "2", "--out", out
                   ).returncode == 0
    same = load_embeddings(gbsg2_embeddings)
    other_model = TEST_ENCODER.replace(model=ModelPrint(encoder="test-enc", weights="b" * 40, config="c",
                                                        projected=True))
    retrained = tmp_path / "retrained.npz"  # same encoder name, same width, other weights
    save_embeddings(retrained, EmbeddingSet(same.embeddings, ids=same.ids, encoder="test-enc",
                                            provenance=other_model))
    assert_clean_error(run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--embeddings",
                               retrained), "retrained.npz", "weights differ")
    bare = tmp_path / "bare.npz"
    save_embeddings(bare, EmbeddingSet(same.embeddings, ids=same.ids, encoder="test-enc"))
    assert_clean_error(run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--embeddings", bare),
                       "bare.npz", "no provenance record", "--trust-provenance")
    trusted = run_cli("survival", "predict", "--model", out, "--table", gbsg2_csv, "--embeddings", bare,
                      "--trust-provenance", "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert "--trust-provenance" in " ".join(trusted.json()["warnings"])
