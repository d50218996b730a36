"""Report classification: patient-level split, labels with enough positives, encoder probe and TF-IDF baseline."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.resources import shared_data_dir
from medvl.tasks.report_classification import (
    ReportClassificationSection,
    eval_report_classification,
    heldout_texts,
    load_reports,
    patient_split,
)
from tests.conftest import assert_clean_error, run_cli

FINDINGS = {
    "Cardiomegaly": ["The heart is enlarged.", "Moderate cardiomegaly is present.", "Cardiac silhouette enlarged."],
    "Pleural Effusion": ["Small left pleural effusion.", "Blunting from an effusion.", "Bilateral effusions."],
    "normal": ["The lungs are clear.", "No acute cardiopulmonary disease.", "Normal chest."],
}


@pytest.fixture
def reports(tmp_path):
    """A CSV in the IU format: uid, Problems (MeSH, ';'-separated, '/' qualifiers), findings, impression."""
    path = tmp_path / "reports.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "MeSH", "Problems", "findings", "impression"])
        for i in range(120):
            label = list(FINDINGS)[i % 3]
            text = FINDINGS[label][int(rng.integers(3))]
            problems = f"{label}/mild;Rare" if i == 0 else label
            w.writerow([str(i), problems, problems, text, "" if i % 5 else "See above."])
        w.writerow(["999", "normal", "normal", "", ""])  # no text: left out
    return path


def test_patient_split_is_seeded_and_keeps_a_patients_reports_together():
    patients = ["a", "a", "b", "c", "c", "d", "e", "f", "g", "h"]
    test = patient_split(patients, 0.5, seed=3)
    assert (test == patient_split(patients, 0.5, seed=3)).all()
    assert test[0] == test[1] and test[3] == test[4] and len({p for p, t in zip(patients, test, strict=True) if t}) == 4


def test_labels_need_enough_positives_and_the_tfidf_baseline_separates_them(reports):
    sec = ReportClassificationSection(reports=reports, min_positives=30, test_fraction=0.3)
    data = load_reports(sec)
    assert data.labels == ["Cardiomegaly", "Pleural Effusion", "normal"] and len(data.texts) == 120  # 'Rare' out
    result = eval_report_classification(sec)
    assert result["tfidf"]["labels"] == 3 and result["metrics"]["tfidf_macro_auc"] > 0.95
    assert result["test_reports"] == 36
    held = heldout_texts(sec)
    assert len(held) == 36 and set(held) <= set(data.texts)


def test_the_encoder_probe_is_reported_beside_the_baseline(reports):
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig

    model = create_model(
        ModelConfig.from_dict({"towers": {"text": {"name": "hf-text-tiny"}}, "embed_dim": 16}), random_weights=True
    )
    sec = ReportClassificationSection(reports=reports, min_positives=30)
    result = eval_report_classification(sec, model=model)
    assert set(result["metrics"]) == {"macro_auc", "tfidf_macro_auc"}
    assert 0.0 <= result["metrics"]["macro_auc"] <= 1.0 and result["encoder"]["labels"] == 3


def test_bad_report_files_are_clear_errors(reports, tmp_path):
    with pytest.raises(InputError, match="no column 'Findings'"):
        load_reports(ReportClassificationSection(reports=reports, text_columns=["Findings"]))
    with pytest.raises(InputError, match="no label has 500 positive"):
        load_reports(ReportClassificationSection(reports=reports, min_positives=500))
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"out: {tmp_path / 'out'}\nreport_classification:\n  reports: {tmp_path / 'missing.csv'}\n")
    assert_clean_error(run_cli("eval", "--config", str(cfg)), "missing.csv", "report file not found")


@pytest.mark.slow
def test_iu_reports_tfidf_baseline():
    data = shared_data_dir()
    path = data / "image_text" / "indiana_reports.csv" if data else None
    if path is None or not path.is_file():
        pytest.skip("needs /work/shared/data/image_text/indiana_reports.csv")
    result = eval_report_classification(ReportClassificationSection(reports=path))
    assert result["reports"] > 3500 and result["tfidf"]["labels"] >= 30
    assert result["metrics"]["tfidf_macro_auc"] > 0.9
