"""Zero-shot classification: hierarchy-consistent output, abstention, calibration, slide pooling rules."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import ConfigError
from medvl.tasks.zeroshot.classifier import PresenceClassifier, ZeroShotClassifier, ensemble
from medvl.tasks.zeroshot.slide import slide_zeroshot

RNG = np.random.default_rng(0)
D = 32
CLASS_EMB = np.linalg.qr(RNG.normal(size=(D, 4)))[0].T  # four orthonormal class directions
IDS = ["kidney cancer", "renal cell carcinoma", "clear cell rcc", "normal"]
ANC = {"renal cell carcinoma": ["kidney cancer"], "clear cell rcc": ["renal cell carcinoma", "kidney cancer"]}


def _near(c: int, n: int, noise: float = 0.3) -> np.ndarray:
    return CLASS_EMB[c] + noise * RNG.normal(size=(n, D)) / np.sqrt(D)


def test_prompt_ensemble_is_the_normalised_mean():
    v = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ensemble(v), [np.sqrt(0.5), np.sqrt(0.5)])


def test_prediction_implies_parents_and_parent_probability_is_never_lower():
    clf = ZeroShotClassifier(IDS, CLASS_EMB, ancestors=ANC, temperature=0.05)
    proba = clf.predict_proba(_near(2, 20))
    hier = clf.hierarchical_proba(proba)
    assert (hier[:, 0] >= hier[:, 1] - 1e-9).all() and (hier[:, 1] >= hier[:, 2] - 1e-9).all()
    rec = clf.decide(proba)[0]
    assert rec["prediction"] == "clear cell rcc" and rec["implies"] == ["renal cell carcinoma", "kidney cancer"]


def test_uncertain_subtype_backs_off_to_parent_or_abstains():
    # halfway between a subtype and its parent class: neither alone is confident; the parent (with its
    # descendants) is
    x = (CLASS_EMB[1] + CLASS_EMB[2])[None]
    clf = ZeroShotClassifier(IDS, CLASS_EMB, ancestors=ANC, temperature=0.05, abstain_below=0.8)
    rec = clf.decide(clf.predict_proba(x))[0]
    assert rec["prediction"] == "renal cell carcinoma" and rec["backed_off"] and rec["probability"] >= 0.8
    flat = ZeroShotClassifier(IDS, CLASS_EMB, temperature=0.05, abstain_below=0.8)  # no hierarchy: abstain
    rec = flat.decide(flat.predict_proba(x))[0]
    assert rec["abstained"] and rec["prediction"] is None
    assert flat.predict(x) == [None]


def test_temperature_calibration_lowers_the_nll():
    labels = RNG.integers(0, 4, size=200)
    x = np.stack([_near(c, 1, noise=1.5)[0] for c in labels])
    clf = ZeroShotClassifier(IDS, CLASS_EMB, temperature=0.001)  # far too sharp
    before = -np.log(clf.predict_proba(x)[np.arange(200), labels] + 1e-12).mean()
    clf.calibrate(x, labels)
    after = -np.log(clf.predict_proba(x)[np.arange(200), labels]).mean()
    assert after < before and 0.01 < clf.temperature < 1.0 and clf.calibration_nll_ == pytest.approx(after, rel=1e-6)


def test_dimension_mismatch_is_a_clear_error():
    clf = ZeroShotClassifier(IDS, CLASS_EMB)
    with pytest.raises(ConfigError, match="16-d but the class embeddings are 32-d"):
        clf.predict_proba(np.ones((1, 16)))


def test_topk_finds_a_small_tumour_that_mean_pooling_dilutes():
    stroma = np.linalg.qr(np.concatenate([CLASS_EMB, RNG.normal(size=(1, D))]).T)[0].T[4]  # orthogonal to classes
    tiles = np.concatenate([np.tile(stroma, (190, 1)), _near(1, 10, noise=0.0)])  # 5% tumour
    clf = ZeroShotClassifier(IDS[:3], CLASS_EMB[:3], temperature=0.05)
    mean = slide_zeroshot(tiles, clf, "mean")
    topk = slide_zeroshot(tiles, clf, "topk", topk=5)
    assert topk.proba[1] > 0.99 and mean.proba[1] < 0.7
    assert topk.tile_scores.shape == (200, 3) and topk.tile_scores[-10:, 1].min() > 0.99


def test_keep_rule_reports_tumour_fraction_and_majority_subtype():
    tiles = np.concatenate([_near(3, 60), _near(2, 30), _near(1, 10)])
    clf = ZeroShotClassifier(IDS, CLASS_EMB, temperature=0.05)
    pred = slide_zeroshot(tiles, clf, "keep", detect_threshold=0.2)
    assert pred.extra["tumour_fraction"] == pytest.approx(0.4)
    assert pred.extra["detected"] is True
    assert pred.class_ids[int(np.argmax(pred.proba))] == "clear cell rcc"
    assert pred.extra["class_fractions"]["renal cell carcinoma"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="normal"):
        slide_zeroshot(tiles, ZeroShotClassifier(IDS[:3], CLASS_EMB[:3]), "keep")


def test_presence_pairs_are_multilabel():
    pos, neg = CLASS_EMB[:2], -CLASS_EMB[:2]
    clf = PresenceClassifier(["tumour", "cyst"], pos, neg, temperature=0.1)
    p = clf.predict_proba((CLASS_EMB[0] - 0.3 * CLASS_EMB[1])[None])  # a tumour, and evidence against a cyst
    assert p[0, 0] > 0.99 and p[0, 1] < 0.01
    assert clf.decide(p)[0]["present"] == ["tumour"]


def test_keep_rule_abstains_on_the_subtype_when_no_tumour_is_detected():
    """Before: ``detected: false, tumour_fraction 0`` beside a subtype with ``abstained: false``."""
    from medvl.tasks.zeroshot.slide import keep_decision

    clf = ZeroShotClassifier(IDS, CLASS_EMB, temperature=0.05)
    pred = slide_zeroshot(_near(3, 50), clf, "keep")  # every tile normal
    assert pred.extra["detected"] is False and pred.extra["tumour_fraction"] == 0.0
    slide_clf = ZeroShotClassifier(pred.class_ids, CLASS_EMB[:3], temperature=0.05)
    naive = slide_clf.decide(pred.proba[None, :])[0]
    assert naive["abstained"] is False and naive["prediction"] is not None  # the contradiction
    rec = keep_decision(naive, pred)
    assert rec["abstained"] is True and rec["prediction"] is None and rec["implies"] == []
    assert "no tumour detected" in rec["abstain_reason"] and "0.000" in rec["abstain_reason"]
    detected = slide_zeroshot(np.concatenate([_near(3, 10), _near(2, 40)]), clf, "keep")
    assert keep_decision(naive, detected) is naive  # a detected tumour keeps its subtype
