"""Negation (NegEx-style) and grade / differentiation qualifiers of tagged mentions, on written and real report text."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pytest

from medvl.knowledge.build import cached_index
from medvl.knowledge.negation import ContextRules, find_cues
from medvl.knowledge.tagger import ConceptTagger

LABELS = Path(__file__).parent / "data" / "iu_negation_labels.json"
SENTENCE = re.compile(r"(?<=[.!?])\s+")

# Written for these tests (not taken from any report): sentence -> [(mention, negated, qualifiers)]
CASES = {
    "No evidence of pneumothorax.": [("pneumothorax", True, {})],
    "Negative for lymphoma.": [("lymphoma", True, {})],
    "Lungs are free of pneumonia.": [("pneumonia", True, {})],
    "Heart enlarged without pulmonary edema.": [("pulmonary edema", True, {})],
    "Rule out pneumonia.": [("pneumonia", True, {})],
    "Lymphoma was ruled out on the biopsy.": [("lymphoma", True, {})],
    "Pneumonia is excluded.": [("pneumonia", True, {})],
    "Pneumothorax cannot be excluded.": [("pneumothorax", False, {})],
    "No change in the small left pleural effusion.": [("pleural effusion", False, {})],
    "No pneumothorax, but a small pleural effusion persists.": [("pneumothorax", True, {}),
                                                                ("pleural effusion", False, {})],
    "Small pleural effusion. No pneumothorax.": [("pleural effusion", False, {}), ("pneumothorax", True, {})],
    "No focal consolidation, nodular opacity, significant pleural effusion or pneumothorax.": [
        ("pleural effusion", True, {}), ("pneumothorax", True, {})],
    "Pleural effusion, pneumothorax or pneumonia is not seen.": [
        ("pleural effusion", True, {}), ("pneumothorax", True, {}), ("pneumonia", True, {})],
    "No lymphovascular invasion is seen, and the carcinoma is moderately differentiated.": [
        ("carcinoma", False, {"differentiation": "moderately"})],
    "Moderately differentiated adenocarcinoma of the colon, grade 2.": [
        ("adenocarcinoma of the colon", False, {"differentiation": "moderately", "grade": "2"})],
    "Invasive ductal carcinoma, poorly differentiated (grade III).": [
        ("invasive ductal carcinoma", False, {"differentiation": "poorly", "grade": "3"})],
    "A well-differentiated squamous cell carcinoma of the skin.": [
        ("squamous cell carcinoma", False, {"differentiation": "well"})],
    "Moderately to poorly differentiated adenocarcinoma.": [
        ("adenocarcinoma", False, {"differentiation": "moderately to poorly"})],
    "High-grade serous carcinoma involving the ovary; no lymphoma.": [
        ("serous carcinoma", False, {"grade": "high"}), ("lymphoma", True, {})],
}


@pytest.fixture(scope="module")
def tagger() -> ConceptTagger:
    return cached_index().tagger()


@pytest.mark.parametrize("text", list(CASES))
def test_negation_and_qualifiers_on_written_sentences(tagger, text):
    found = [(m.text.lower(), m.negated, m.attributes) for m in tagger.tag(text)]
    assert found == [(t, neg, q) for t, neg, q in CASES[text]]


def test_labels_drop_negated_mentions(tagger):
    text = "No pneumothorax. Small left pleural effusion without pneumonia."
    assert [m.negated for m in tagger.tag(text)] == [True, False, True]
    assert tagger.labels(text) == ["ICD10CM:J90"]
    assert [m.text for m in tagger.find(text)] == ["pneumothorax", "pleural effusion", "pneumonia"]  # no context


def test_pseudo_triggers_win_over_the_triggers_inside_them():
    cues = find_cues("pneumothorax cannot be excluded no change no pneumonia".split())
    assert [(c.kind, c.first, c.last) for c in cues] == [("pseudo", 1, 3), ("pseudo", 4, 5), ("pre", 6, 6)]


def test_rules_are_configurable(tagger):
    narrow = tagger.with_rules(ContextRules(window=2))
    text = "No focal consolidation or nodular pneumonia."
    assert [m.negated for m in tagger.tag(text)] == [True]
    assert [m.negated for m in narrow.tag(text)] == [False]


@pytest.fixture(scope="module")
def iu_reports(shared_data) -> dict[str, dict[str, str]]:
    path = shared_data / "image_text" / "indiana_reports.csv"
    if not path.is_file():
        pytest.skip("IU reports are not in shared/data")
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["uid"]: row for row in csv.DictReader(fh)}


def test_real_negative_findings_are_negated(tagger, iu_reports):
    hits = 0
    for row in iu_reports.values():
        for text in SENTENCE.split(row["findings"] or ""):
            if text.strip().lower() in ("no evidence of pneumothorax.", "no pneumothorax or pleural effusion."):
                mentions = tagger.tag(text)
                assert mentions and all(m.negated for m in mentions), text
                hits += 1
    assert hits > 50


def test_negation_precision_on_hand_labelled_iu_sentences(tagger, iu_reports):
    """179 sentences of IU reports, their mentions labelled by hand (negated or not); the labels name each sentence
    by report, field, position and SHA-1, so no report text is kept in the repository."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for item in json.loads(LABELS.read_text()):
        text = SENTENCE.split(iu_reports[item["uid"]][item["field"]] or "")[item["sentence"]].strip()
        assert hashlib.sha1(text.encode()).hexdigest() == item["sha1"], item
        predicted = {m.text.lower(): m.negated for m in tagger.tag(text)}
        for mention, negated in item["mentions"]:
            assert mention in predicted, (item, predicted)
            key = ("t" if predicted[mention] == negated else "f") + ("p" if predicted[mention] else "n")
            counts[key] += 1
    precision = counts["tp"] / (counts["tp"] + counts["fp"])
    recall = counts["tp"] / (counts["tp"] + counts["fn"])
    assert counts["tp"] + counts["fn"] >= 150
    assert precision >= 0.97 and recall >= 0.95, counts
