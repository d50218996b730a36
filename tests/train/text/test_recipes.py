"""The text recipes: every full recipe parses, the knowledge stage runs on the adapted encoder, the CLI points a
recipe at a reports folder, and bad input is one clear error."""

from __future__ import annotations

import json

import pytest

from medvl.resources import config_dir
from medvl.train import TrainConfig, train
from tests.conftest import assert_clean_error, run_cli

RECIPES = config_dir() / "recipes"
FULL = ["text-dapt-mlm", "text-dapt-electra", "text-vocab", "text-distill", "text-dapt-knowledge"]


@pytest.mark.parametrize("name", FULL)
def test_full_recipes_parse_and_have_a_tiny_twin(name):
    cfg = TrainConfig.from_file(RECIPES / f"{name}.yaml")
    twin = TrainConfig.from_file(RECIPES / f"{name}-tiny.yaml")
    assert cfg.recipe == twin.recipe == name
    assert [s.objective for s in cfg.stages] == [s.objective for s in twin.stages]
    assert cfg.stages[0].max_minutes > 0 and cfg.precision == "bf16"


def test_the_knowledge_stage_runs_on_the_adapted_encoder(tmp_path):
    summary = train(TrainConfig.from_file(RECIPES / "text-dapt-knowledge-tiny.yaml"), tmp_path / "run")
    assert summary["stages"] == ["mlm", "knowledge-text"] and summary["global_steps"] == 6
    linking = summary["evaluations"]["knowledge-text"]["synonym-linking"]
    assert {"before", "after"} <= set(linking) and 0 <= linking["after"]["r@1"] <= 1


def test_cli_points_a_recipe_at_a_reports_folder_and_refuses_an_empty_one(tmp_path):
    data = TrainConfig.from_file(RECIPES / "text-dapt-mlm-tiny.yaml").to_dict()
    corpus = {"name": "reports", "path": "unset", "split": "section", "upsample": 2}
    data["stages"][0]["data"]["options"]["corpora"] = [corpus]
    data["stages"][0]["steps"] = 2
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(data))
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text("FINDINGS: Small right pleural effusion. IMPRESSION: Effusion, no pneumothorax.\n")
    (reports / "b.jsonl").write_text(json.dumps({"text": "FINDINGS: Clear lungs. IMPRESSION: Normal chest."}) + "\n")
    ok = run_cli("train", "--config", str(config), "--corpus", str(reports), "--out", str(tmp_path / "run"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert ok.json()["global_steps"] == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("\n\nx\n")
    bad = run_cli("train", "--config", str(config), "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "b"))
    assert_clean_error(bad, "the corpus is empty")


def test_a_stage_measures_report_classification_before_and_after(tmp_path):
    import csv

    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "Problems", "findings", "impression"])
        for i in range(90):
            label, text = [("Cardiomegaly", "The heart is enlarged."), ("Pleural Effusion", "Small left effusion."),
                           ("normal", "The lungs are clear.")][i % 3]
            w.writerow([i, label, text, ""])
    data = TrainConfig.from_file(RECIPES / "text-dapt-mlm-tiny.yaml").to_dict()
    data["stages"][0]["steps"] = 2
    data["stages"][0]["evaluate"] = [{"name": "report-classification",
                                      "options": {"reports": str(reports), "min_positives": 20}}]
    summary = train(TrainConfig.from_dict(data), tmp_path / "run")
    figures = summary["evaluations"]["mlm"]["report-classification"]
    assert figures["before"]["labels"] == 3 and figures["after"]["tfidf_macro_auc"] == 1.0
    assert 0 <= figures["after"]["macro_auc"] <= 1
