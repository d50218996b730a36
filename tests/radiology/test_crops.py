"""Organ-centred crops from the bundled TotalSegmentator label map."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.volume import Volume, load_volume
from medvl.radiology.labels import label_name, resolve_label_ids
from medvl.radiology.organ_crop import crop_box, organ_box
from medvl.radiology.transforms import CTPreprocessConfig, OrganCropConfig, run_chain


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


def test_array_twin_matches_the_dictionary_transform(ct_small, ct_labels):
    from medvl.radiology.organ_crop import OrganCropd, organ_crop
    from medvl.radiology.transforms import AIR_HU, as_meta_tensor

    image, labels = load_volume(ct_small), load_volume(ct_labels)
    ids, box = resolve_label_ids(["kidneys"]), (96.0, 90.0, 60.0)
    img, lab, affine = organ_crop(image.array, labels.array, image.affine, ids, box, fill=AIR_HU)
    out = OrganCropd(["image", "label"], "label", ids, box, fill={"image": AIR_HU})(
        {"image": as_meta_tensor(image.array.astype(np.float32), image.affine),
         "label": as_meta_tensor(labels.array.astype(np.float32), labels.affine)})
    np.testing.assert_array_equal(np.asarray(out["image"])[0], img)
    np.testing.assert_array_equal(np.asarray(out["label"])[0], lab)
    np.testing.assert_allclose(np.asarray(out["image"].affine), affine)
    assert img.shape == (32, 30, 20) and set(np.unique(lab)) >= {2.0, 3.0}


class _CropCases:
    """Two (image, label) cases through the kidney-crop chain: a dataset for worker processes."""

    def __init__(self, image, labels, config):
        from medvl.radiology.transforms import build_transforms

        self.image, self.labels = image, labels
        self.chain = build_transforms(config, with_label=True)

    def __len__(self):
        return 2

    def __getitem__(self, i):
        from medvl.radiology.transforms import as_meta_tensor

        data = {"image": as_meta_tensor(self.image.array.astype(np.float32) + i, self.image.affine),
                "label": as_meta_tensor(self.labels.array.astype(np.float32), self.labels.affine)}
        return self.chain(data)["image"]


def test_the_ct_chain_pickles_and_runs_in_two_worker_processes(ct_small, ct_labels):
    import pickle

    import torch

    from medvl.radiology.transforms import build_transforms

    cfg = CTPreprocessConfig(spacing=(3.0, 3.0, 3.0), spatial_size=(32, 32, 16), foreground_crop=True,
                             organ_crop=OrganCropConfig(labels=["kidneys"], box_mm=(96.0, 96.0, 48.0)))
    chain = pickle.loads(pickle.dumps(build_transforms(cfg, with_label=True)))
    assert [type(t).__name__ for t in chain.transforms][1] == "OrganCropd"
    image, labels = load_volume(ct_small), load_volume(ct_labels)
    cases = _CropCases(image, labels, cfg)
    inline = [cases[i] for i in range(2)]
    # the pickle round trip above is what a spawn/forkserver worker receives; fork keeps this test fast
    loader = torch.utils.data.DataLoader(pickle.loads(pickle.dumps(cases)), batch_size=None, num_workers=2)
    in_workers = list(loader)
    assert len(in_workers) == 2 and in_workers[0].shape == (1, 16, 32, 32)
    for got, want in zip(in_workers, inline, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
