"""The one image transform: configs from data configs, colour spaces, crops, and BreastMNIST bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medvl.errors import ConfigError, InputError
from medvl.models.transforms import (
    ImageTransformConfig,
    build_transform,
    grayscale_transform,
    image_transform,
    tower_transform,
)
from medvl.resources import bundled


def _breastmnist_before(images: np.ndarray, size: int) -> torch.Tensor:
    """The BreastMNIST preprocessing as training applied it before the one transform existed."""
    x = torch.as_tensor(images).float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - 0.5) / 0.25).expand(-1, 3, -1, -1).contiguous()


@pytest.mark.parametrize("size", [28, 32])
def test_breastmnist_training_tensors_are_unchanged_bit_for_bit(size):
    with np.load(bundled("breastmnist")) as data:
        images = data["train_images"][:128]
    got = image_transform(images, grayscale_transform(size))
    assert got.shape == (128, 3, size, size)
    assert torch.equal(got, _breastmnist_before(images, size))


def test_rgb_pixels_into_a_grayscale_model_and_back():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    gray = image_transform(rgb, grayscale_transform(32))
    assert gray.shape == (2, 3, 32, 32) and torch.equal(gray[:, 0], gray[:, 2])  # luma, replicated
    luma = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32) / 255
    ref = F.interpolate(torch.from_numpy(luma)[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(gray[:, :1], (ref - 0.5) / 0.25, atol=1e-5, rtol=0)
    plain = image_transform(rgb[..., 0], ImageTransformConfig(size=40))  # grayscale pixels into an RGB tower
    assert plain.shape == (2, 3, 40, 40) and not torch.equal(plain[:, 0], plain[:, 1])  # ImageNet mean per channel


def test_resize_then_centre_crop_and_the_wrapper():
    tiles = np.random.default_rng(1).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    cfg = ImageTransformConfig(size=224, resize=256)
    out = build_transform(cfg)(tiles)
    full = image_transform(tiles, ImageTransformConfig(size=256))
    torch.testing.assert_close(out, full[..., 16:240, 16:240])  # no resize needed: just the centre crop
    assert build_transform(cfg).config is cfg


def test_configs_from_data_configs_and_bad_configs():
    cfg = ImageTransformConfig.from_data_config({"input_size": (3, 160, 160), "mean": (0.5,) * 3, "std": (0.5,) * 3,
                                                 "interpolation": "bicubic", "resize_px": 182})
    assert (cfg.size, cfg.resize, cfg.interpolation, cfg.mean) == (160, 182, "bicubic", (0.5, 0.5, 0.5))
    assert ImageTransformConfig.from_data_config({}) == ImageTransformConfig()
    with pytest.raises(ConfigError, match="grayscale needs 1 mean"):
        ImageTransformConfig(channels="grayscale")
    with pytest.raises(ConfigError, match="resize"):
        ImageTransformConfig(size=224, resize=200)
    with pytest.raises(InputError, match="uint8"):
        image_transform(np.zeros((1, 8, 8, 3), np.float32), ImageTransformConfig(size=8))


def test_a_tower_carries_its_transform():
    from medvl.models import create_tower

    tower = create_tower("timm-tiny")
    assert tower_transform(tower) == ImageTransformConfig(size=160, mean=(0.5,) * 3, std=(0.5,) * 3)
    tower.transform_config = grayscale_transform(32)
    assert tower_transform(tower) == grayscale_transform(32)
