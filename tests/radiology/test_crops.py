"""Organ-centred crops from the bundled TotalSegmentator label map."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.volume import Volume, load_volume
from medvl.radiology.labels import label_name, resolve_label_ids
from medvl.radiology.transforms import CTPreprocessConfig, OrganCropConfig, crop_box, organ_box, run_chain


def test_label_table():
    assert resolve_label_ids(["kidneys"]) == [2, 3]
    assert resolve_label_ids(["liver", "spleen", "7"]) == [1, 5, 7]
    assert label_name(3) == "kidney_left" and label_name(200) == "label_200"


def test_kidney_box_is_centred_on_the_kidneys_in_mm(ct_small, ct_labels):
    image, labels = load_volume(ct_small), load_volume(ct_labels)
    kidney = np.isin(labels.array, [2, 3])
    centroid_mm = (labels.affine @ np.r_[np.argwhere(kidney).mean(axis=0), 1.0])[:3]
    cfg = CTPreprocessConfig(spacing=None, foreground_crop=False, spatial_size=(40, 30, 20),
                             organ_crop=OrganCropConfig(labels=["kidneys"], box_mm=(120.0, 90.0, 60.0)))
    out, affine = run_chain(image, cfg, labels)
    assert out.shape == (1, 20, 30, 40)  # 120/3 x 90/3 x 60/3 voxels, no resampling
    centre_mm = (affine @ np.r_[(np.array([40, 30, 20]) - 1) / 2.0, 1.0])[:3]
    assert np.all(np.abs(centre_mm - centroid_mm) <= 1.5 + 1e-6)  # within half a voxel
    # the right kidney (label 2) lies on the patient's right: the RAS +x side of the box
    right = (labels.affine @ np.r_[np.argwhere(labels.array == 2).mean(axis=0), 1.0])[0]
    assert right > centre_mm[0]


def test_box_past_the_scan_is_padded_with_air():
    arr = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = crop_box(arr, np.array([-1, 0, 0]), np.array([2, 3, 3]), fill=-1024)
    assert out.shape == (3, 3, 3) and np.all(out[0] == -1024)
    np.testing.assert_array_equal(out[1:], arr[:2])
    label = np.zeros((10, 10, 10))
    label[0:2, 0:2, 0:2] = 3
    start, stop = organ_box(label, [3], (1.0, 1.0, 1.0), (4.0, 4.0, 4.0))
    assert list(stop - start) == [4, 4, 4] and start[0] < 0


def test_missing_organ_and_grid_mismatch(ct_small, ct_labels):
    image, labels = load_volume(ct_small), load_volume(ct_labels)
    cfg = CTPreprocessConfig(organ_crop=OrganCropConfig(labels=["prostate"]))
    with pytest.raises(InputError, match=r"no voxel with label id\(s\) \[22\]"):
        run_chain(image, cfg, labels)
    shifted = Volume(labels.array[:, :, :20], labels.affine)
    with pytest.raises(InputError, match="does not match the image grid"):
        run_chain(image, CTPreprocessConfig(organ_crop=OrganCropConfig()), shifted)
