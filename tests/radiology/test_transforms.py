"""The one preprocessing chain: config round trip, window arithmetic, layout, orientation, MONAI parity."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.config import ConfigError
from medvl.io.volume import Volume, load_volume
from medvl.radiology.transforms import CTPreprocessConfig, OrganCropConfig, preprocess_volume, window_bounds


def test_config_round_trip_through_dict_and_file(tmp_path):
    cfg = CTPreprocessConfig(window=None, level=-600, width=1500, spacing=(0.8, 0.8, 2.0), spatial_size=(96, 96, 48),
                             organ_crop=OrganCropConfig(labels=["kidney_left", 5], box_mm=(100, 120, 80)))
    again = CTPreprocessConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    cfg.to_file(tmp_path / "ct.yaml")
    assert CTPreprocessConfig.from_file(tmp_path / "ct.yaml") == cfg
    # stored inside a larger model config (as a checkpoint's config.json does) and read back
    model_config = {"ct_preprocess": cfg.to_dict(), "tower": "resnet3d"}
    assert CTPreprocessConfig.from_dict(model_config["ct_preprocess"]) == cfg
    assert cfg.tower_input_shape == (1, 48, 96, 96)
    assert CTPreprocessConfig().fingerprint() != CTPreprocessConfig(window="lung").fingerprint()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": "liverish"}, "unknown preset 'liverish'"),
        ({"level": 40.0}, "either a window preset or level/width"),
        ({"window": None, "level": 40.0}, "both level and width"),
        ({"orientation": "RAR"}, "not valid axis codes"),
        ({"spacing": (1.0, 0.0, 1.0)}, "must be positive"),
        ({"organ_crop": {"labels": ["kidneyz"]}}, "unknown organ 'kidneyz'"),
        ({"spatial_sizes": (1, 1, 1)}, "unknown key 'spatial_sizes'"),
    ],
)
def test_config_errors_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        CTPreprocessConfig.from_dict(changes)


def test_window_presets_map_to_unit_range():
    assert window_bounds(CTPreprocessConfig(window="abdomen")) == (-160.0, 240.0)
    assert window_bounds(CTPreprocessConfig(window="lung")) == (-1350.0, 150.0)
    hu = np.full((8, 8, 8), -1000.0, dtype=np.float32)
    hu[2:6, 2:6, 2:6] = 40.0  # soft tissue at the abdomen window's level
    hu[3, 3, 3] = 2000.0
    out = preprocess_volume(Volume(hu, np.eye(4)), CTPreprocessConfig(spacing=None, spatial_size=(8, 8, 8),
                                                                       foreground_crop=False))
    assert out.shape == (1, 8, 8, 8) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[0, 4, 4, 4] == pytest.approx(0.5)  # the level maps to the middle
    assert out[0, 3, 3, 3] == 1.0 and out[0, 0, 0, 0] == 0.0  # D, H, W = z, y, x


def test_orientation_does_not_change_the_result(ct_small):
    """The same anatomy stored LPS (DICOM-like) and RAS (NIfTI) preprocesses to the same tensor."""
    ras = load_volume(ct_small)
    flipped = ras.array[::-1, ::-1].copy()
    lps_affine = ras.affine @ np.array([[-1, 0, 0, ras.shape[0] - 1], [0, -1, 0, ras.shape[1] - 1],
                                        [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    lps = Volume(flipped, lps_affine)
    assert lps.orientation == "LPS"
    cfg = CTPreprocessConfig(spacing=(3.0, 3.0, 3.0), spatial_size=(96, 96, 24))
    np.testing.assert_allclose(preprocess_volume(lps, cfg), preprocess_volume(ras, cfg), atol=1e-6)


def test_chain_equals_hand_written_monai_compose(ct_small):
    from monai.data import MetaTensor
    from monai.transforms import (
        Compose,
        CropForegroundd,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        Spacingd,
    )

    vol = load_volume(ct_small)
    cfg = CTPreprocessConfig(window="soft_tissue", spacing=(2.0, 2.0, 4.0), spatial_size=(112, 96, 24))
    ref = Compose([
        Orientationd(keys="image", axcodes="RAS", labels=None),
        Spacingd(keys="image", pixdim=(2.0, 2.0, 4.0), mode="bilinear", dtype=np.float32),
        CropForegroundd(keys="image", source_key="image", select_fn=lambda x: x > -500, margin=2, allow_smaller=True),
        ScaleIntensityRanged(keys="image", a_min=50 - 175, a_max=50 + 175, b_min=0.0, b_max=1.0, clip=True),
        ResizeWithPadOrCropd(keys="image", spatial_size=(112, 96, 24)),
    ])({"image": MetaTensor(vol.array[None].copy(), affine=vol.affine)})["image"]
    ours = preprocess_volume(vol, cfg)
    assert ours.shape == (1, 24, 96, 112)
    np.testing.assert_allclose(ours, np.asarray(ref).transpose(0, 3, 2, 1), atol=1e-5)
