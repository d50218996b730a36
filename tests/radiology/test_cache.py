"""The persistent cache: keyed by content and config, atomic, nothing written for failed cases."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from medvl.errors import InputError
from medvl.radiology.cache import VolumeCache
from medvl.radiology.preprocess import CTCase, preprocess_case
from medvl.radiology.transforms import CTPreprocessConfig

CFG = CTPreprocessConfig(spacing=(3.0, 3.0, 3.0), spatial_size=(64, 64, 16))


def test_second_pass_reads_the_cache(tmp_path, ct_small):
    cache = VolumeCache(tmp_path / "cache", CFG)
    first = preprocess_case(CTCase(ct_small, "a"), CFG, cache)
    second = preprocess_case(CTCase(ct_small, "a"), CFG, cache)
    assert not first.hit and second.hit and first.path == second.path
    np.testing.assert_array_equal(first.array, second.array)
    assert (cache.dir / "config.json").is_file()
    assert CTPreprocessConfig.from_file(cache.dir / "config.json") == CFG
    assert second.meta["source_spacing_mm"] == [3.0, 3.0, 3.0]
    # another window is another entry, in another config folder
    lung = CFG.replace(window="lung")
    other = preprocess_case(CTCase(ct_small, "a"), lung, VolumeCache(tmp_path / "cache", lung))
    assert not other.hit and other.path.parent != first.path.parent


def test_key_follows_file_content(tmp_path, ct_small):
    copy = tmp_path / "ct.nii.gz"
    shutil.copyfile(ct_small, copy)
    cache = VolumeCache(tmp_path / "cache", CFG)
    key = cache.key(copy)
    assert cache.key(ct_small) == key  # same bytes, other path: same entry
    img = nib.load(copy)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] += 1
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), copy)
    assert cache.key(copy) != key


def test_failed_case_writes_nothing(tmp_path):
    arr = np.zeros((8, 8, 8), dtype=np.float32)
    arr[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii.gz")
    cache = VolumeCache(tmp_path / "cache", CFG)
    with pytest.raises(InputError, match="NaN"):
        preprocess_case(CTCase(tmp_path / "nan.nii.gz", "nan"), CFG, cache)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))


def test_dataset_feeds_a_dataloader(tmp_path, ct_small):
    import torch

    from medvl.radiology.dataset import CTVolumeDataset

    ds = CTVolumeDataset([CTCase(ct_small, "a"), CTCase(ct_small, "b")], CFG, tmp_path / "cache")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 1, 16, 64, 64) and batch["case_id"] == ["a", "b"]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1  # same bytes, same entry
