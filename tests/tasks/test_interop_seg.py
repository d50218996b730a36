"""``medvl slide tile --dicom-seg``: tissue and class segments as DICOM SEG, read back with highdicom and pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medvl.io.features import FeatureStore
from medvl.io.slide import open_slide
from medvl.pathology.tissue import detect_tissue
from tests.conftest import assert_clean_error, run_cli

hd = pytest.importorskip("highdicom")
CARCINOMA = "DOID:3459"  # breast carcinoma: SNOMED CT 154513000 through the graph's xrefs


@pytest.fixture(scope="module")
def tiled(svs_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    r = run_cli("slide", "tile", svs_path, "--out", out / "tiles", "--dicom-seg", out / "dicom", "--json")
    assert r.returncode == 0, r.stderr
    return out, r.json()["records"][0]


def test_tissue_segment_matches_the_mask_and_references_its_source(tiled, svs_path):
    out, rec = tiled
    seg_path, source_path = (out / "dicom" / f"cmu-1-small-region_seg{s}.dcm" for s in ("", "_source"))
    assert rec["dicom_seg"] == str(seg_path) and rec["segments"] == ["tissue"]
    seg = hd.seg.segread(seg_path)
    source = pydicom.dcmread(source_path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and source.Modality == "SM"
    (segment,) = seg.SegmentSequence
    prop = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("85756007", "SCT")
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == source.SeriesInstanceUID
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])[0, ..., 0]
    with open_slide(svs_path) as slide:
        mask, thumb = detect_tissue(slide)
    assert pixels.shape == mask.mask.shape and np.array_equal(pixels.astype(bool), mask.mask)
    assert np.array_equal(source.pixel_array, thumb)
    for path in (seg_path, source_path):  # de-identified: pseudonymous patient, no file name inside
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("medvl-")
        assert b"cmu-1-small-region" not in path.read_bytes()


def test_class_segments_from_tile_scores(tiled, svs_path, tmp_path):
    out, _ = tiled
    table = FeatureStore(out / "tiles" / "cmu-1-small-region.h5").read()
    scores = np.zeros((len(table), 2), np.float32)
    scores[::3, 0] = 0.9
    scores[:, 1] = 1 - scores[:, 0]
    npz = tmp_path / "scores.npz"
    np.savez(npz, scores=scores, class_ids=np.array([CARCINOMA, "DOID:1612"]), coords=table.coords,
             patch_size_level0=float(table.attrs["patch_size_level0"]))
    r = run_cli("slide", "tile", svs_path, "--out", tmp_path / "tiles", "--dicom-seg", tmp_path / "dicom",
                "--tile-scores", npz, "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["records"][0]["segments"] == ["tissue", "breast carcinoma", "breast cancer"]
    seg = hd.seg.segread(tmp_path / "dicom" / "cmu-1-small-region_seg.dcm")
    code = seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("154513000", "SCT")
    source_uid = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    pixels = seg.get_pixels_by_source_instance([source_uid], segment_numbers=[2])[0, ..., 0].astype(bool)
    with open_slide(svs_path) as slide:
        mask, _ = detect_tissue(slide)
    size = float(table.attrs["patch_size_level0"])
    for (x, y), hit in zip(table.coords[:6], scores[:6, 0] >= 0.5, strict=True):  # tile centres on the mask grid
        cx, cy = int((x + size / 2) / mask.scale[0]), int((y + size / 2) / mask.scale[1])
        assert pixels[cy, cx] == hit
    assert pixels.mean() == pytest.approx(scores[:, 0].astype(bool).mean() * len(table) * size ** 2
                                          / (mask.scale[0] * mask.scale[1] * pixels.size), rel=0.15)


def test_uncoded_class_is_refused_and_nothing_written(svs_path, tmp_path):
    npz = tmp_path / "scores.npz"
    np.savez(npz, scores=np.ones((2, 2), np.float32), class_ids=np.array([CARCINOMA, "odd blue cells"]),
             coords=np.zeros((2, 2)))
    assert_clean_error(run_cli("slide", "tile", svs_path, "--out", tmp_path / "tiles", "--dicom-seg",
                               tmp_path / "dicom", "--tile-scores", npz), "no code", "odd blue cells")
    assert not (tmp_path / "dicom").exists() and not (tmp_path / "tiles").exists()
