"""Report classification: frozen sentence embeddings of a text encoder plus a linear probe, and the TF-IDF baseline.

A labelled report set (the IU chest X-ray reports: findings and impression -> MeSH problem terms, multi-label) is
split at patient level with a seed; each label with at least ``min_positives`` positive reports gets a logistic
regression on the training embeddings, and the report is the macro-AUC over those labels on the test split. The
classical baseline, TF-IDF over word 1-2-grams with the same logistic regression on the same split, is reported
beside it: frozen sentence encoders often lose to it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError, InputError

__all__ = ["LabelledReports", "ReportClassificationSection", "eval_report_classification", "load_reports",
           "macro_auc_probe", "patient_split", "tfidf_features"]


@dataclass
class ReportClassificationSection(Config):
    """The ``report_classification`` section of ``medvl eval``.

    Attributes:
        reports: a CSV of reports (``indiana_reports.csv``).
        model: a checkpoint folder or registered model whose text embeddings are probed (empty: the baseline only).
        text_columns: columns joined into the report text.
        label_column: the column of ``;``-separated labels (a ``/`` qualifier is cut: ``Opacity/lung`` -> ``Opacity``).
        patient_column: the column the split groups by.
        test_fraction, seed: the patient-level split.
        min_positives: labels with fewer positive reports (in the whole set) are left out of the macro-AUC.
        C: inverse L2 strength of the logistic regressions.
        batch_size: texts per encoder forward pass.
        baseline: also report TF-IDF (word 1-2-grams) + logistic regression.
    """

    reports: Path
    model: str = ""
    text_columns: list[str] = field(default_factory=lambda: ["findings", "impression"])
    label_column: str = "Problems"
    patient_column: str = "uid"
    test_fraction: float = 0.3
    seed: int = 0
    min_positives: int = 30
    C: float = 1.0
    batch_size: int = 64
    baseline: bool = True

    def validate(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ConfigError("report_classification.test_fraction: must be within (0, 1)")


@dataclass
class LabelledReports:
    """Report texts, their patients and a multi-hot label matrix over ``labels``."""

    texts: list[str]
    patients: list[str]
    labels: list[str]
    y: np.ndarray


def load_reports(sec: ReportClassificationSection) -> LabelledReports:
    """Reports with a non-empty text; labels kept when they have ``min_positives`` positives."""
    path = Path(sec.reports)
    if not path.is_file():
        raise InputError(path, "report file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = [*sec.text_columns, sec.label_column, sec.patient_column]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"no column '{missing[0]}' (columns: {', '.join(reader.fieldnames or [])})")
        rows = [r for r in reader if any((r[c] or "").strip() for c in sec.text_columns)]
    texts = [" ".join((r[c] or "").strip() for c in sec.text_columns if (r[c] or "").strip()) for r in rows]
    sets = [{t.split("/")[0].strip() for t in (r[sec.label_column] or "").split(";") if t.strip()} for r in rows]
    counts: dict[str, int] = {}
    for s in sets:
        for label in s:
            counts[label] = counts.get(label, 0) + 1
    labels = sorted(k for k, n in counts.items() if n >= sec.min_positives)
    if not labels:
        raise InputError(path, f"no label has {sec.min_positives} positive reports")
    y = np.array([[label in s for label in labels] for s in sets], dtype=np.int8)
    return LabelledReports(texts, [r[sec.patient_column] for r in rows], labels, y)


def patient_split(patients: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """A boolean test mask: a seeded ``test_fraction`` of the patients (every report of a patient on one side)."""
    unique = sorted(set(patients))
    rng = np.random.default_rng(seed)
    test = set(np.asarray(unique, dtype=object)[rng.permutation(len(unique))[:round(test_fraction * len(unique))]])
    return np.array([p in test for p in patients])


def heldout_texts(sec: ReportClassificationSection) -> list[str]:
    """The test-split report texts (to keep out of a pre-training corpus)."""
    data = load_reports(sec)
    test = patient_split(data.patients, sec.test_fraction, sec.seed)
    return [t for t, is_test in zip(data.texts, test, strict=True) if is_test]


def macro_auc_probe(X: np.ndarray, y: np.ndarray, test: np.ndarray, labels: list[str], C: float = 1.0,
                    scale: bool = True) -> dict[str, Any]:
    """One logistic regression per label on the training rows; AUC per label on the test rows and their mean."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    train = ~test
    X_train, X_test = X[train], X[test]
    if scale:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    per_label: dict[str, float] = {}
    for j, label in enumerate(labels):
        y_train, y_test = y[train, j], y[test, j]
        if len(set(y_train)) < 2 or len(set(y_test)) < 2:
            continue
        clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(X_train, y_train)
        per_label[label] = float(roc_auc_score(y_test, clf.decision_function(X_test)))
    return {"macro_auc": float(np.mean(list(per_label.values()))), "labels": len(per_label), "per_label": per_label}


def tfidf_features(texts: list[str], test: np.ndarray) -> np.ndarray:
    """TF-IDF over word 1-2-grams, fitted on the training texts only."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vec.fit([t for t, is_test in zip(texts, test, strict=True) if not is_test])
    return vec.transform(texts)


def encode_texts(model: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Frozen sentence embeddings (eval mode, no gradients, float32)."""
    import torch

    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            parts.append(model.encode_text(texts[i:i + batch_size]).float().cpu().numpy())
    return np.concatenate(parts)


def eval_report_classification(sec: ReportClassificationSection, out: Path | None = None,
                               model: Any = None) -> dict[str, Any]:
    """Macro-AUC of the model's frozen embeddings and of the TF-IDF baseline on the seeded patient-level split."""
    data = load_reports(sec)
    test = patient_split(data.patients, sec.test_fraction, sec.seed)
    report: dict[str, Any] = {"reports": len(data.texts), "test_reports": int(test.sum()), "labels": data.labels}
    metrics: dict[str, float] = {}
    if model is None and sec.model:
        from medvl.models import create_model

        model = create_model(sec.model)
    if model is not None:
        result = macro_auc_probe(encode_texts(model, data.texts, sec.batch_size), data.y, test, data.labels, sec.C)
        report["encoder"] = result
        metrics["macro_auc"] = result["macro_auc"]
    if sec.baseline:
        result = macro_auc_probe(tfidf_features(data.texts, test), data.y, test, data.labels, sec.C, scale=False)
        report["tfidf"] = result
        metrics["tfidf_macro_auc"] = result["macro_auc"]
    if not metrics:
        raise ConfigError("report_classification: give a model, or keep the baseline on")
    return {"metrics": metrics, **report}
