"""Stain normalisation: fitted once (torchstain for Macenko and Reinhard), applied batched to tiles, saved with the run
and recorded with the features; tested against torchstain on real tiles of the bundled CMU-1 slide."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medvl.errors import ConfigError, InputError
from medvl.io.slide import open_slide
from medvl.pathology.stain import StainConfig, StainFit, fit_stain, stain_label

torchstain = pytest.importorskip("torchstain")


@pytest.fixture(scope="module")
def tiles(svs_path):
    with open_slide(svs_path) as slide:
        ref = slide.read_region((800, 1200), 0, (256, 256))
        batch = np.stack([slide.read_region(xy, 0, (128, 128)) for xy in ((1200, 1600), (600, 900), (1500, 700))])
    return ref, batch


def test_macenko_matches_torchstain_tile_by_tile(tiles):
    ref, batch = tiles
    fit = fit_stain(ref, StainConfig(method="macenko"))
    norm = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    norm.fit(torch.from_numpy(ref).permute(2, 0, 1))
    np.testing.assert_allclose(fit.params["stain_matrix"], norm.HERef.numpy(), rtol=1e-6)
    out = fit.apply(batch)
    for tile, got in zip(batch, out, strict=True):
        want = norm.normalize(torch.from_numpy(tile).permute(2, 0, 1), stains=False)[0].numpy().astype(np.uint8)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(out.astype(int) - batch.astype(int)).mean() > 2  # it did change the colours


def test_reinhard_matches_torchstain_tile_by_tile(tiles):
    ref, batch = tiles
    fit = fit_stain(ref, StainConfig(method="reinhard"))
    norm = torchstain.normalizers.ReinhardNormalizer(backend="torch")
    norm.fit(torch.from_numpy(ref).permute(2, 0, 1))
    out = fit.apply(batch)
    for tile, got in zip(batch, out, strict=True):
        want = norm.normalize(torch.from_numpy(tile).permute(2, 0, 1)).numpy()
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 2 and (diff > 1).mean() < 1e-3


def _restain(tile: np.ndarray, scale: tuple[float, float], config: StainConfig) -> np.ndarray:
    """The tile with its haematoxylin and eosin concentrations scaled (a different staining of the same tissue)."""
    from medvl.pathology.stain import Macenko

    params = Macenko.fit(tile, config)
    he = np.asarray(params["stain_matrix"])
    od = -np.log((tile.reshape(-1, 3).astype(np.float64) + 1) / config.io)
    conc = np.linalg.lstsq(he, od.T, rcond=None)[0] * np.asarray(scale)[:, None]
    return (config.io * np.exp(-(he @ conc))).T.clip(0, 255).reshape(tile.shape).astype(np.uint8)


@pytest.mark.parametrize("method", ["macenko", "reinhard", "vahadane"])
def test_a_restained_tile_comes_back_towards_the_reference(tiles, method):
    ref, _ = tiles
    config = StainConfig(method=method)
    fit = fit_stain(ref, config)
    pale = _restain(ref, (0.55, 1.6), config)
    back = fit.apply(pale[None])[0]
    before = np.abs(pale.astype(float) - ref).mean()
    after = np.abs(back.astype(float) - ref).mean()
    # Reinhard matches colour statistics, not stains: it gets less of the way back
    assert after < {"macenko": 0.75, "reinhard": 0.9, "vahadane": 0.75}[method] * before, (before, after)


def test_reference_without_tissue_is_a_clear_error(tmp_path, blank_tiff):
    from PIL import Image

    glass = np.full((256, 256, 3), 238, np.uint8) + np.random.default_rng(0).integers(0, 4, (256, 256, 3),
                                                                                       dtype=np.uint8)
    png = tmp_path / "glass.png"
    Image.fromarray(glass).save(png)
    for method in ("macenko", "reinhard", "vahadane"):
        with pytest.raises(InputError, match="glass.png: the stain reference has no tissue"):
            fit_stain(png, StainConfig(method=method))
    with pytest.raises(InputError, match="blank.tiff: the stain reference has no tissue"):
        fit_stain(blank_tiff)
    with pytest.raises(ConfigError, match="unknown stain normalisation method 'ruifrok'"):
        StainConfig(method="ruifrok")


def test_fit_from_a_slide_saves_and_reloads(svs_path, tmp_path):
    fit = fit_stain(svs_path, StainConfig(method="macenko", reference_tiles=4))
    path = fit.save(tmp_path / "fit.json")
    again = StainFit.load(path)
    assert again == fit and again.fingerprint() == fit.fingerprint()
    assert stain_label(again) == f"macenko:{fit.fingerprint()}" and stain_label(None) == "none"
    other = fit_stain(svs_path, StainConfig(method="reinhard", reference_tiles=4))
    assert other.fingerprint() != fit.fingerprint()
    assert json.loads(path.read_text())["method"] == "macenko"


def test_extraction_applies_and_records_the_fit(svs_path, tmp_path, tiles):
    """The CLI saves the fit with the run, records it with the features, normalises the tiles, and re-extracts when
    the fit changes (never reuses features made without it)."""
    import h5py

    from tests.conftest import run_cli

    fit_path = tmp_path / "fit.json"
    r = run_cli("slide", "stain-fit", svs_path, "--method", "reinhard", "--out", fit_path, "--json")
    assert r.returncode == 0, r.stderr
    fit = StainFit.load(fit_path)
    out = tmp_path / "features"
    common = ["--encoder", "timm-tiny", "--random-weights", "--out", out, "--device", "cpu", "--mpp", "2.0", "--size",
              "64", "--json"]
    plain = run_cli("slide", "extract", svs_path, *common)
    assert plain.returncode == 0, plain.stderr
    with h5py.File(out / "cmu-1-small-region.h5") as f:
        raw, stain_attr = f["features"][()], f.attrs["stain"]
    assert stain_attr == "none"
    normed = run_cli("slide", "extract", svs_path, *common, "--stain", fit_path)
    assert normed.returncode == 0 and normed.json()["records"][0]["status"] == "ok", normed.stderr
    with h5py.File(out / "cmu-1-small-region.h5") as f:
        feats, attrs = f["features"][()], dict(f.attrs)
    assert attrs["stain"] == f"reinhard:{fit.fingerprint()}" and attrs["encoder"].endswith(attrs["stain"])
    assert StainFit.load(out / "stain_fit.json") == fit
    assert feats.shape == raw.shape and not np.allclose(feats, raw)
    again = run_cli("slide", "extract", svs_path, *common, "--stain", fit_path)
    assert again.json()["records"][0]["status"] == "skipped"


def test_stain_fit_cli_on_glass_is_one_error_line(tmp_path):
    from PIL import Image

    from tests.conftest import assert_clean_error, run_cli

    Image.fromarray(np.full((128, 128, 3), 240, np.uint8)).save(tmp_path / "glass.png")
    out = tmp_path / "fit.json"
    r = run_cli("slide", "stain-fit", tmp_path / "glass.png", "--method", "vahadane", "--out", out)
    assert_clean_error(r, "glass.png: the stain reference has no tissue")
    assert not out.exists()
