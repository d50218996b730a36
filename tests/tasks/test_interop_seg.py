"""``medvl slide tile --dicom-seg``: tissue and class segments as DICOM SEG, read back with highdicom and pydicom."""

from __future__ import annotations

from pathlib import Path

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


def test_dicom_wsi_source_is_referenced_itself(tmp_path):
    from tests.pathology import synthetic_slides as syn

    folder = syn.write_dicom_wsi(tmp_path / "wsi", width=1024, height=768, tile=128, mpp=0.5, levels=3)
    levels = {int(d.TotalPixelMatrixColumns): d for d in map(pydicom.dcmread, sorted(folder.glob("*.dcm")))}
    coarsest = levels[min(levels)]
    r = run_cli("slide", "tile", folder, "--out", tmp_path / "tiles", "--dicom-seg", tmp_path / "dicom", "--json")
    assert r.returncode == 0, r.stderr
    rec = r.json()["records"][0]
    assert rec["dicom_seg_source"].startswith("the DICOM WSI")
    assert not (tmp_path / "dicom" / "wsi_seg_source.dcm").exists()
    seg = hd.seg.segread(rec["dicom_seg"])
    from medvl.io.deid import Deidentifier

    deid = Deidentifier()
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == deid.remap_uid(coarsest.SeriesInstanceUID)
    assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == deid.remap_uid(coarsest.SOPInstanceUID)
    assert seg.FrameOfReferenceUID == deid.remap_uid(coarsest.FrameOfReferenceUID)
    matrix = seg.get_total_pixel_matrix(segment_numbers=[1])[..., 0].astype(bool)
    assert matrix.shape == (int(coarsest.TotalPixelMatrixRows), int(coarsest.TotalPixelMatrixColumns))
    with open_slide(folder) as slide:
        mask, _ = detect_tissue(slide)
    rows = np.minimum(((np.arange(matrix.shape[0]) + 0.5) * mask.mask.shape[0] / matrix.shape[0]).astype(int),
                      mask.mask.shape[0] - 1)
    cols = np.minimum(((np.arange(matrix.shape[1]) + 0.5) * mask.mask.shape[1] / matrix.shape[1]).astype(int),
                      mask.mask.shape[1] - 1)
    assert np.array_equal(matrix, mask.mask[np.ix_(rows, cols)]) and 0.05 < matrix.mean() < 0.95
    raw = Path(rec["dicom_seg"]).read_bytes()
    assert coarsest.SOPInstanceUID.encode() not in raw and coarsest.StudyInstanceUID.encode() not in raw
