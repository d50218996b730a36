"""The draft report panel's content and the download files of the apps (no browser, no demo workspace)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pydicom
import pytest

from medvl.apps import report
from medvl.apps.slideview import SlideTiles
from medvl.errors import InputError
from medvl.knowledge import default_graph

RECORD = {"prediction": "DOID:1612", "name": "breast cancer", "probability": 0.7, "abstained": False,
          "backed_off": False, "implies": [],
          "top": [{"id": "DOID:1612", "name": "breast cancer", "probability": 0.7, "with_descendants": 0.8},
                  {"id": "ONCOTREE:BREAST", "name": "Breast", "probability": 0.2, "with_descendants": 0.2},
                  {"id": "odd blue cells", "name": "odd blue cells", "probability": 0.1, "with_descendants": 0.1}]}


class _Classifier:
    """Two classes; probability of the first grows with the tile's first coordinate."""

    class_ids = ["DOID:3459", "DOID:1612"]
    names = ["breast carcinoma", "breast cancer"]

    def predict_proba(self, x):
        p = np.clip(np.asarray(x)[:, 0], 0, 1)
        return np.stack([p, 1 - p], axis=1)


def _tiles(n=6, size=448.0):
    coords = np.stack([np.arange(n) * size, np.full(n, 500.0)], axis=1)
    return SlideTiles(coords=coords, patch_size_level0=size, embeddings=np.c_[np.linspace(0, 1, n), np.zeros(n)],
                      source="test")


def test_draft_lists_codes_probabilities_evidence_and_says_research():
    graph = default_graph()
    evidence = report.evidence_tiles(_Classifier(), _tiles(), "DOID:3459", k=2, mpp=0.5)
    assert [e["tile"] for e in evidence] == [5, 4] and evidence[0]["um"] == [1120.0, 250.0, 224.0]
    draft = report.draft_report(RECORD, graph, evidence)
    codes = {f["id"]: f["code"] for f in draft["findings"]}
    assert codes["DOID:1612"] == "SCT 254837009" and codes["ONCOTREE:BREAST"] == "99ONCOTREE BREAST"
    assert codes["odd blue cells"] is None
    text = report.report_text(draft)
    assert text.startswith("DRAFT: research output") and "Decision: breast cancer" in text
    assert "tile 5: 2240, 500, 448 px (1120.0, 250.0 µm, side 224.0 µm)" in text
    assert "private scheme" in text and "no code" in text
    abstained = report.report_text(report.draft_report({**RECORD, "abstained": True, "prediction": None}, graph))
    assert "Decision: abstained" in abstained


def test_sr_download_and_its_refusal_for_free_text():
    graph = default_graph()
    coded = {**RECORD, "top": RECORD["top"][:2]}
    ds = pydicom.dcmread(io.BytesIO(report.sr_bytes(coded, graph, "tiny-model", "case-1", "slide")))
    assert ds.Modality == "SR" and ds.PatientID.startswith("medvl-")
    with pytest.raises(InputError, match="odd blue cells"):
        report.sr_bytes(RECORD, graph, "tiny-model", "case-1", "slide")


def test_qupath_download_has_one_detection_per_tile():
    data = json.loads(report.qupath_bytes(_Classifier(), _tiles()))
    assert len(data["features"]) == 6
    last = data["features"][-1]["properties"]
    assert last["objectType"] == "detection" and last["classification"]["name"] == "breast carcinoma"
    assert last["measurements"] == {"breast carcinoma probability": 1.0, "breast cancer probability": 0.0}


def test_slide_seg_download_zip(svs_path):
    from medvl.io.slide import open_slide

    graph = default_graph()
    with open_slide(svs_path) as slide:
        data = report.slide_seg_zip(slide, _Classifier(), _tiles(4), ["DOID:3459"], graph)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["seg.dcm", "seg_source.dcm"]
        seg = pydicom.dcmread(io.BytesIO(z.read("seg.dcm")))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["tissue", "breast carcinoma >= 0.5"]
