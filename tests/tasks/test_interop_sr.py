"""``medvl zeroshot --dicom-sr``: the findings as a TID 1500 SR, read back with highdicom and pydicom."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch

from medvl.knowledge import default_graph
from medvl.tasks.interop.codes import concept_code
from tests.conftest import assert_clean_error, run_cli
from tests.tasks.test_model_tasks import KIDNEY, RCC, _raw_features_for, _write_slide


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, Path]:
    from medvl.models import create_model
    from medvl.tasks.space import JointSpace
    from medvl.tasks.zeroshot.classifier import ZeroShotClassifier, ZeroShotConfig
    from medvl.tasks.zeroshot.run import resolve_classes

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("sr")
    create_model("tiny-clip", random_weights=True).save(root / "tiny")
    space = JointSpace.load(root / "tiny", random_weights=True)
    graph = default_graph()
    ids, _ = resolve_classes(graph, KIDNEY)
    clf = ZeroShotClassifier.from_graph(space.model, graph, ids, ZeroShotConfig())
    target = clf.class_embeddings[clf.class_ids.index(RCC)]
    noise = 0.01 * np.random.default_rng(0).normal(size=(30, 32))
    return root / "tiny", _write_slide(root / "Doe_John_1941.h5", _raw_features_for(space, target + noise),
                                       made_by=space.expected("image", projected=False))


def _items(ds, out=None):
    """Every content item of an SR tree, depth first."""
    out = [] if out is None else out
    for item in ds.get("ContentSequence", []):
        out.append(item)
        _items(item, out)
    return out


def test_sr_codes_findings_with_snomed_and_records_model_and_probability(case, tmp_path):
    model, slide = case
    out = tmp_path / "sr.dcm"
    r = run_cli("zeroshot", slide, "--model", model, "--node", KIDNEY, "--temperature", "0.001",
                "--dicom-sr", out, "--random-weights", "--json")
    assert r.returncode == 0, r.stderr
    rec = r.json()
    assert rec["dicom_sr"]["path"] == str(out)
    sr = hd.sr.srread(out)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    ds = pydicom.dcmread(out)
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report (TID 1500)
    groups = sr.content.get_image_measurement_groups()
    top = rec["result"]["top"]
    findings = [g for g in groups if g.finding_type is not None]
    assert len(findings) == len(top) and len(groups) == len(top) + 1  # one per ranked class, and the decision
    first = findings[0]
    code = first.finding_type
    assert (code.value, code.scheme_designator) == ("254915003", "SCT")  # RCC's SNOMED CT xref
    assert code.meaning == "renal cell carcinoma" and top[0]["id"] == RCC
    for group, t in zip(findings, top, strict=True):
        (probability,) = group.get_measurements()
        assert probability.name.value == "122157" and probability.unit.value == "1"
        assert probability.value == pytest.approx(t["probability"], abs=1e-5)
        assert group.finding_type.meaning == concept_code(default_graph(), t["id"]).meaning
    algorithm = next(i for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "111001")
    assert algorithm.TextValue == "tiny"
    version = next(i for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "111003")
    assert version.TextValue.startswith("sha256:")
    (impression,) = groups[-1].get_qualitative_evaluations()
    assert impression.name.value == "121073" and impression.value.value == "254915003"
    texts = [i.TextValue for i in _items(sr) if i.ValueType == "TEXT"]
    assert any("Research output" in t for t in texts)
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("medvl-") and str(ds.PatientName) == ""
    raw = out.read_bytes()
    assert b"Doe" not in raw and b"John" not in raw and str(slide).encode() not in raw


def test_private_fallback_is_declared_and_said(case, tmp_path):
    model, slide = case
    graph = default_graph()
    private = next(c for c in graph.descendants("ONCOTREE:KIDNEY") if concept_code(graph, c).scheme == "99ONCOTREE")
    out = tmp_path / "sr.dcm"
    r = run_cli("zeroshot", slide, "--model", model, "--classes", f"{RCC},{private}", "--dicom-sr", out,
                "--random-weights", "--json")
    assert r.returncode == 0, r.stderr
    ds = pydicom.dcmread(out)
    schemes = {i.CodingSchemeDesignator: i.CodingSchemeName for i in ds.CodingSchemeIdentificationSequence}
    assert schemes.get("99ONCOTREE") == "OncoTree"
    codes = {(c.CodeValue, c.CodingSchemeDesignator) for i in _items(ds) for c in i.get("ConceptCodeSequence", [])}
    assert (private.split(":")[1], "99ONCOTREE") in codes
    texts = " ".join(i.TextValue for i in _items(ds) if i.ValueType == "TEXT")
    assert "private scheme" in texts and private in texts


def test_free_text_classes_are_refused_and_nothing_is_written(case, tmp_path):
    model, slide = case
    out = tmp_path / "sr.dcm"
    assert_clean_error(run_cli("zeroshot", slide, "--model", model, "--classes", f"{RCC},odd blue cells",
                               "--dicom-sr", out, "--random-weights"), "no code", "odd blue cells")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_ct_report_and_abstention_are_coded():
    from medvl.tasks.interop.sr import ModelInfo, build_zeroshot_sr

    result = {"prediction": None, "name": None, "probability": 0.4, "abstained": True, "backed_off": False,
              "top": [{"id": "DOID:4450", "name": "renal cell carcinoma", "probability": 0.4},
                      {"id": "DOID:2154", "name": "nephroblastoma", "probability": 0.35}]}
    sr, summary = build_zeroshot_sr(result, default_graph(), ModelInfo("ct-model", "1"), "ct-case", "CT")
    items = _items(sr)
    procedure = next(i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "121058")  # Procedure reported
    assert procedure.ConceptCodeSequence[0].CodeValue == "77477000"  # computed tomography
    impression = next(i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "121073")
    assert impression.ConceptCodeSequence[0].CodeValue == "373068000"  # undetermined: the model abstained
    assert summary["abstained"] and summary["private_codes"] == 0
