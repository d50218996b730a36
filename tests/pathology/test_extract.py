"""Feature extraction with registered image towers; parity with a bare forward; local weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvl.errors import ConfigError, InputError
from medvl.io.slide import open_slide
from medvl.pathology.extract import EncoderSpec, ExtractConfig, extract_features, load_tile_encoder
from medvl.pathology.loader import iter_tile_batches
from medvl.pathology.tiling import TileConfig, make_tile_grid


@pytest.fixture(scope="module")
def grid(pyramid_tiff):
    with open_slide(pyramid_tiff) as s:
        return make_tile_grid(s, TileConfig(mpp=1.0, size=64, min_tissue=0))


def test_extract_matches_manual_forward(pyramid_tiff, grid):
    torch.manual_seed(0)
    enc = load_tile_encoder(EncoderSpec(name="timm-tiny", random_weights=True))
    assert enc.embed_dim == 64 and (enc.transform.size, enc.transform.mean) == (160, (0.5, 0.5, 0.5))
    feats = extract_features(pyramid_tiff, grid, enc, ExtractConfig(batch_size=5, workers=2, device="cpu"))
    assert feats.shape == (len(grid), 64) and np.isfinite(feats).all()
    tiles = np.concatenate([t for _, t in iter_tile_batches(pyramid_tiff, grid, workers=0)])
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(160, 160), mode="bicubic", antialias=True).clamp(0, 1)
    x = (x - 0.5) / 0.5  # test_vit's mean/std
    with torch.inference_mode():
        ref = enc.model.encode(x).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)
    assert not np.allclose(feats[0], feats[-1])  # different tiles, different features


def test_timm_any_architecture_with_local_weights(tmp_path, pyramid_tiff, grid):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("test_resnet", num_classes=5)
    save_file({f"module.{k}": v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "w.safetensors")
    enc = load_tile_encoder(EncoderSpec(name="timm", model_name="test_resnet", weights=str(tmp_path / "w.safetensors")))
    assert enc.name == "timm:test_resnet@w.safetensors"
    got = enc.model.model.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(got[k], v)
    feats = extract_features(pyramid_tiff, grid, enc, ExtractConfig(batch_size=8, device="cpu"))
    assert feats.shape == (len(grid), enc.embed_dim)


def test_bad_encoder_specs(tmp_path):
    with pytest.raises(ConfigError, match="unknown tower 'nope'"):
        load_tile_encoder(EncoderSpec(name="nope"))
    with pytest.raises(ConfigError, match="unknown timm model"):
        load_tile_encoder(EncoderSpec(name="timm", model_name="not_a_model"))
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_tile_encoder(EncoderSpec(name="timm-tiny", weights=str(tmp_path / "bad.pt")))


@pytest.mark.parametrize("project", [False, True])
def test_medvl_checkpoint_as_encoder(tmp_path, pyramid_tiff, grid, project):
    from medvl.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("tiny-clip", random_weights=True).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    enc = load_tile_encoder(EncoderSpec(name=str(tmp_path / "ckpt"), project=project, random_weights=True))
    feats = extract_features(pyramid_tiff, grid, enc, ExtractConfig(batch_size=8, device="cpu"))
    tiles = np.concatenate([t for _, t in iter_tile_batches(pyramid_tiff, grid, workers=0)])
    with torch.inference_mode():
        x = enc.preprocess(tiles, torch.device("cpu"))
        ref = model.encode_image(x) if project else model.towers["image"].encode(x)
    assert enc.projected is project and feats.shape == (len(grid), ref.shape[1])
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-4, atol=1e-4)
    if project:
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-4)  # joint space, L2-normalised
