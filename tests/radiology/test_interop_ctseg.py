"""``medvl ct preprocess --dicom-seg``: the model's input region as a DICOM SEG of the (de-identified) source series.

Read back with highdicom and pydicom: references, geometry, HU of the source written for a NIfTI, and the mask's
extent against the box the CT viewer outlines (``medvl.apps.ctcrop``, computed from the grid corners).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medvl.io.deid import Deidentifier
from medvl.io.volume import load_volume
from tests.conftest import run_cli
from tests.radiology.dicom_series import PHI, write_ct_series

hd = pytest.importorskip("highdicom")
SIZE = "48,48,16"


def _run(source, tmp_path):
    r = run_cli("ct", "preprocess", source, "--size", SIZE, "--cache", tmp_path / "cache", "--dicom-seg",
                tmp_path / "dicom", "--json")
    assert r.returncode == 0, r.stderr
    return r.json()["records"][0]


def _voxel_box(seg, datasets, volume) -> tuple[tuple[int, int], ...]:
    """The segmented voxels' index range per volume axis (through each frame's source slice position)."""
    points = []
    for ds in datasets:
        frame = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1])[0, ..., 0]
        rows, cols = np.nonzero(frame)
        if not len(rows):
            continue
        iop, ipp = np.asarray(ds.ImageOrientationPatient, float), np.asarray(ds.ImagePositionPatient, float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        lps = ipp + cols[:, None] * dc * iop[:3] + rows[:, None] * dr * iop[3:]
        ras = lps * [-1, -1, 1]
        points.append((np.linalg.inv(volume.affine) @ np.c_[ras, np.ones(len(ras))].T).T[:, :3])
    idx = np.rint(np.concatenate(points)).astype(int)
    return tuple((int(idx[:, a].min()), int(idx[:, a].max())) for a in range(3))


def _expected_box(source, volume) -> tuple[tuple[int, int], ...]:
    from medvl.apps.ctcrop import crop_bounds
    from medvl.radiology.transforms import CTPreprocessConfig, run_chain

    config = CTPreprocessConfig(spatial_size=tuple(int(v) for v in SIZE.split(",")))
    _, affine = run_chain(volume, config)
    bounds = crop_bounds(affine, config.spatial_size, volume.affine)
    return tuple((max(0, int(np.ceil(lo - 0.5))), min(n - 1, int(np.floor(hi - 0.5))))
                 for (lo, hi), n in zip(bounds, volume.shape, strict=True))


def test_nifti_source_is_written_as_ct_and_segmented(ct_path, tmp_path):
    rec = _run(ct_path, tmp_path)
    volume = load_volume(ct_path)
    source = sorted((tmp_path / "dicom").glob("*_source/*.dcm"))
    assert rec["slices"] == len(source) == volume.shape[2]
    datasets = [pydicom.dcmread(p) for p in source]
    for k in (0, len(datasets) // 2):  # the same voxels, in HU, at the same place
        ds = datasets[k]
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.allclose(hu, np.rint(volume.array[:, :, k]).T)
        expected = (volume.affine @ [0, 0, k, 1])[:3] * [-1, -1, 1]
        assert np.allclose(np.asarray(ds.ImagePositionPatient, float), expected, atol=1e-3)
    seg = hd.seg.segread(rec["dicom_seg"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "130047"
    assert _voxel_box(seg, datasets, volume) == _expected_box(ct_path, volume)
    assert seg.PatientID.startswith("medvl-") and seg.PatientIdentityRemoved == "YES"


def test_dicom_source_is_referenced_de_identified(ct_path, tmp_path):
    series = write_ct_series(tmp_path / "study", ct_path, slices=range(12), phi=PHI)
    originals = [pydicom.dcmread(p) for p in sorted(series.iterdir())]
    rec = _run(series, tmp_path)
    seg = hd.seg.segread(rec["dicom_seg"])
    deid = Deidentifier()
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == deid.remap_uid(originals[0].SeriesInstanceUID)
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {deid.remap_uid(o.SOPInstanceUID) for o in originals}
    needles = [*PHI.values(), originals[0].StudyInstanceUID, originals[0].SeriesInstanceUID,
               *(o.SOPInstanceUID for o in originals)]
    for path in (tmp_path / "dicom").rglob("*.dcm"):
        raw = path.read_bytes().decode("latin-1")
        assert not [n for n in needles if n in raw], path
    volume = load_volume(series)
    datasets = [pydicom.dcmread(p) for p in sorted((tmp_path / "dicom").glob("*_source/*.dcm"))]
    assert _voxel_box(seg, datasets, volume) == _expected_box(series, volume)
