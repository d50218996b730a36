"""DICOM series reading: sorting, spacing, rescale, compression, several series, and broken series."""
# ruff: noqa: F811 - pytest fixtures imported from tests.radiology.dicom_series

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvl.errors import InputError
from medvl.io.volume import load_volume, require_ct
from medvl.resources import bundled
from tests.radiology.dicom_series import ct_small, dicom_j2k, dicom_series, write_ct_series  # noqa: F401


def _canonical(vol):
    img = nib.as_closest_canonical(nib.Nifti1Image(vol.array, vol.affine))
    return np.asarray(img.dataobj), img.affine


def test_series_matches_the_nifti_it_was_written_from(dicom_series):
    """Shuffled files, reversed InstanceNumbers, SliceThickness 2 mm vs 3 mm step, slope 0.5 / intercept -2048."""
    vol = load_volume(dicom_series)
    ref = load_volume(bundled("ct_small"))
    assert vol.orientation == "LPS" and vol.shape == (122, 101, 30)
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))  # z from positions, not SliceThickness
    arr, aff = _canonical(vol)
    np.testing.assert_array_equal(arr, ref.array)  # rescale applied exactly once, slices in spatial order
    np.testing.assert_allclose(aff, ref.affine, atol=1e-3)
    assert vol.meta["rescale"]["slope"] == 0.5 and vol.meta["n_slices"] == 30
    assert vol.warnings == []


def test_jpeg2000_lossless_series_decodes_identically(dicom_series, dicom_j2k):
    vol = load_volume(dicom_j2k)
    assert vol.meta["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    ref = load_volume(dicom_series)
    np.testing.assert_array_equal(vol.array, ref.array[:, :, :10])


def _as_series(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(get_testdata_file(name), folder / name)
    return folder


def test_pydicom_test_files(tmp_path):
    ct = load_volume(_as_series(tmp_path, "CT_small.dcm"))
    assert ct.shape == (128, 128, 1) and ct.modality == "CT"
    assert ct.array.min() == -896 and ct.array.max() == 1167  # stored values + intercept -1024, once
    assert any("single slice" in w for w in ct.warnings)
    mr = load_volume(_as_series(tmp_path, "MR_small_jp2klossless.dcm"))
    raw = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(mr.array[:, :, 0], raw.T.astype(np.float32))
    with pytest.raises(InputError, match="modality is MR"):
        require_ct(mr)


def test_several_series_largest_ct_by_default(tmp_path, ct_small):
    folder = tmp_path / "study"
    write_ct_series(folder / "a", ct_small, slices=range(12), series_number=3)
    write_ct_series(folder / "b", ct_small, slices=range(5), series_number=7)
    write_ct_series(folder / "c", ct_small, slices=range(20), series_number=9, modality="MR")
    vol = load_volume(folder)
    assert vol.shape[2] == 12 and vol.meta["series_number"] == 3
    assert any("3 series found" in w and "largest CT series" in w for w in vol.warnings)
    assert load_volume(folder, series="7").shape[2] == 5
    picked = vol.meta["series_found"][1]["series_uid"]
    assert load_volume(folder, series=picked).meta["series_number"] == 7
    with pytest.raises(InputError, match="no series matches '42'"):
        load_volume(folder, series="42")


def test_missing_slice_is_reported(tmp_path, ct_small):
    vol = load_volume(write_ct_series(tmp_path / "gap", ct_small, slices=range(10), drop=(4,)))
    assert vol.spacing[2] == pytest.approx(3.0)
    assert any(w.startswith("missing slices: 1 slice") for w in vol.warnings)


def test_broken_series(tmp_path, ct_small):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty folder"):
        load_volume(empty)
    mixed = write_ct_series(tmp_path / "mixed", ct_small, slices=range(4))
    other = write_ct_series(tmp_path / "other", bundled("ct_labels"), slices=range(4, 5))
    ds = pydicom.dcmread(next(other.iterdir()))
    ds.SeriesInstanceUID = pydicom.dcmread(next(mixed.iterdir())).SeriesInstanceUID
    arr = ds.pixel_array[:50, :60].copy()
    ds.Rows, ds.Columns, ds.PixelData = 50, 60, arr.tobytes()
    ds.save_as(mixed / "odd.dcm")
    with pytest.raises(InputError, match="mixed image sizes in one series"):
        load_volume(mixed)
    nopix = tmp_path / "nopix"
    nopix.mkdir()
    for i, f in enumerate(sorted(write_ct_series(tmp_path / "src", ct_small, slices=range(3)).iterdir())):
        ds = pydicom.dcmread(f)
        del ds.PixelData
        ds.save_as(nopix / f"{i}.dcm")
    with pytest.raises(InputError, match="none carries pixel data"):
        load_volume(nopix)
    dup = write_ct_series(tmp_path / "dup", ct_small, slices=range(3))
    first = next(dup.iterdir())
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dup / "copy.dcm")
    with pytest.raises(InputError, match="duplicate slice position"):
        load_volume(dup)
    shutil.rmtree(nopix)


# ---------------------------------------------------------------------------------------- issue 16, item 6
def _edge_slice(folder):
    files = sorted(folder.iterdir())
    return max(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))


def test_a_slice_cut_short_at_the_edge_is_a_named_missing_slice(tmp_path, ct_small):
    """Before: 19 slices, exit 0, and only "1 DICOM object(s) without pixel data skipped" (no file named)."""
    folder = write_ct_series(tmp_path / "cut", ct_small, slices=range(20))
    edge = _edge_slice(folder)
    edge.write_bytes(edge.read_bytes()[:900])  # the header survives, the pixel data is gone
    vol = load_volume(folder)
    notes = [w for w in vol.warnings if w.startswith("missing slices")]
    assert vol.shape[2] == 19 and len(notes) == 1
    assert edge.name in notes[0] and "at an edge" in notes[0]


def test_a_slice_with_damaged_pixel_data_names_its_file(tmp_path, ct_small):
    folder = write_ct_series(tmp_path / "cut", ct_small, slices=range(6))
    edge = _edge_slice(folder)
    edge.write_bytes(edge.read_bytes()[:2000])  # cut inside the pixel data
    with pytest.raises(InputError, match=f"{edge.name}: pixel data unreadable or truncated"):
        load_volume(folder)


def test_one_file_where_a_series_is_expected_is_an_error_with_a_hint(tmp_path, ct_small):
    """Before: one slice became a 1-slice "volume" without a word."""
    folder = write_ct_series(tmp_path / "series", ct_small, slices=range(5))
    one = sorted(folder.iterdir())[0]
    with pytest.raises(InputError, match="not a series") as info:
        load_volume(one)
    assert str(folder) in str(info.value) and "4 other file(s)" in str(info.value)
