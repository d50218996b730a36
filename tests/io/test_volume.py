"""load_volume on NIfTI: geometry, HU values, and the broken files a user may hand it."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.volume import Volume, load_volume, require_ct, volume_info
from medvl.resources import bundled


def test_bundled_ct_geometry_and_hu():
    vol = load_volume(bundled("ct"))
    assert vol.array.dtype == np.float32 and vol.shape == (122, 101, 112)
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert vol.orientation == "RAS"
    info = volume_info(vol)
    assert info["hu_min"] == -1207 and info["hu_max"] == 3382 and info["slices"] == 112
    assert info["spacing_mm"] == [3.0, 3.0, 3.0]


def test_nifti_scaling_applied_once(tmp_path):
    hu = np.array([[[-1000, 0], [40, 1000]]], dtype=np.float32).repeat(3, axis=0)
    img = nib.Nifti1Image(((hu + 1024) / 2).astype(np.int16), np.diag([0.7, 0.7, 2.5, 1]))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = load_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(vol.array, hu)
    assert vol.spacing == pytest.approx((0.7, 0.7, 2.5))


def test_nan_in_nifti_is_refused(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.float32)
    arr[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match="1 NaN voxel"):
        load_volume(tmp_path / "nan.nii.gz")


def test_truncated_gzip_is_refused(tmp_path):
    data = bundled("ct_small").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_volume(tmp_path / "cut.nii.gz")
    (tmp_path / "garbage.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all"))
    with pytest.raises(InputError, match="garbage.nii.gz"):
        load_volume(tmp_path / "garbage.nii.gz")


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a volume"):
        load_volume(tmp_path / "notes.txt")


def test_non_ct_modality_refused_unless_allowed():
    mr = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4), meta={"Modality": "MR"}, source="mr")
    with pytest.raises(InputError, match="modality is MR, not CT.*--allow-non-ct"):
        require_ct(mr)
    assert require_ct(mr, allow_non_ct=True) is mr
