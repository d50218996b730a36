"""``medvl models ...`` and ``medvl slide extract --encoder CARD`` run as a user would, offline: a lab carries weights
in a bundle, installs it, and extracts with the card's preprocessing and tiling."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import assert_clean_error, run_cli
from tests.models.card_references import user_card


def test_list_json_and_modality_filter(tmp_path):
    env = {"MEDVL_MODELS": str(tmp_path / "store")}
    rows = run_cli("models", "list", "--json", env=env).json()
    assert len(rows) >= 20 and {"uni", "titan", "merlin"} <= {r["name"] for r in rows}
    uni = next(r for r in rows if r["name"] == "uni")
    assert uni["dim"] == 1024 and uni["licence"] == "CC-BY-NC-ND-4.0" and uni["installed"] is False
    assert uni["input"] == "256px@0.5mpp->224"
    ct = run_cli("models", "list", "--modality", "ct", "--json", env=env).json()
    assert {r["name"] for r in ct} == {"merlin", "ct-clip", "renalclip-resnet18"}
    assert_clean_error(run_cli("models", "list", "--modality", "mri", env=env), "--modality")


def test_show_lists_what_is_not_available():
    card = run_cli("models", "show", "conch-v1", "--json").json()
    assert card["weights"]["select_prefix"] == "visual." and card["tile"]["input_px"] == 448
    assert any("captioning decoder" in n for n in card["not_available"])  # the text tower is built (coca-text)
    assert card["zero_shot"]["text_builder"] == "coca-text"
    assert_clean_error(run_cli("models", "show", "unii"), "unknown model card 'unii'")


@pytest.fixture
def lab(tmp_path):
    card, weights, forward = user_card(tmp_path, tile_px=64, mpp=2.0, magnification=5.0)
    env = {"MEDVL_CARDS": str(tmp_path / "cards"), "MEDVL_MODELS": str(tmp_path / "store")}
    return card, weights, forward, env


def test_check_pack_unpack_extract(lab, tmp_path, svs_path):
    card, weights, forward, env = lab
    ok = run_cli("models", "check", card.name, weights, "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.json()["ok"] and ok.json()["matched"] == ok.json()["expected"]
    bundle = tmp_path / "carry" / "lab-uni.tar"
    packed = run_cli("models", "pack", card.name, weights, "--out", bundle, "--json", env=env)
    assert packed.returncode == 0, packed.stderr
    # inside the air-gapped network: only the bundle travels (no card folder)
    offline = {"MEDVL_MODELS": env["MEDVL_MODELS"]}
    unpacked = run_cli("models", "unpack", bundle, "--json", env=offline)
    assert unpacked.returncode == 0 and unpacked.json()["verified"], unpacked.stderr
    installed = run_cli("models", "check", card.name, "--json", env=offline)
    assert installed.returncode == 0 and installed.json()["checksums_failed"] == [], installed.stderr
    out = tmp_path / "features"
    r = run_cli("slide", "extract", svs_path, "--encoder", card.name, "--out", out, "--device", "cpu", "--json",
                env=offline)
    assert r.returncode == 0, r.stderr
    assert r.json()["warnings"] == [] and "warning" not in r.stderr
    with h5py.File(out / "cmu-1-small-region.h5") as f:
        feats, attrs = f["features"][()], dict(f.attrs)
        coords = f["coords"][()]
    assert attrs["mpp"] == 2.0 and attrs["tile_px"] == 64  # the card's tiling
    assert attrs["encoder"].startswith("lab-uni@sha256:") and feats.shape == (len(coords), card.embedding.dim)
    _same_as_reference(svs_path, out, feats, forward, card)


def _same_as_reference(svs_path, out, feats, forward, card):
    from medvl.io.features import FeatureStore
    from medvl.models.transforms import ImageTransformConfig, image_transform
    from medvl.pathology.loader import iter_tile_batches
    from medvl.pathology.tiling import TileGrid

    grid = TileGrid.from_table(FeatureStore(out / "cmu-1-small-region.h5").read())
    transform = ImageTransformConfig.from_data_config(card.tile.data_config())
    tiles = np.concatenate([t for _, t in iter_tile_batches(svs_path, grid, batch_size=32, workers=0)])
    with torch.inference_mode():
        want = forward(image_transform(tiles, transform, torch.device("cpu"))).numpy()
    np.testing.assert_allclose(feats, want, atol=1e-4, rtol=1e-4)


def test_extract_override_warns_in_stderr_and_json(lab, tmp_path, svs_path):
    card, weights, _, env = lab
    r = run_cli("slide", "extract", svs_path, "--encoder", card.name, "--weights", weights, "--mpp", "4.0",
                "--out", tmp_path / "f", "--device", "cpu", "--json", env=env)
    assert r.returncode == 0, r.stderr
    message = next(w for w in r.json()["warnings"] if w.startswith("tiling at 4 µm/px"))
    assert "but model card 'lab-uni' expects 2 µm/px" in message
    assert r.stderr.count(f"warning: {message}") == 1  # once, on stderr and in the JSON alike (medvl.log.warn)


def test_bad_weights_one_error_line(lab, tmp_path, svs_path):
    card, weights, _, env = lab
    state = torch.load(weights / "pytorch_model.bin", weights_only=True)
    state["head.weight"] = torch.zeros(3, 64)
    torch.save(state, weights / "pytorch_model.bin")
    assert_clean_error(run_cli("models", "check", card.name, weights, env=env), "classification head")
    out = tmp_path / "f"
    r = run_cli("slide", "extract", svs_path, "--encoder", card.name, "--weights", weights, "--out", out, env=env)
    assert_clean_error(r, "weights do not match card 'lab-uni'")
    assert not list(out.glob("*.h5")) or "features" not in h5py.File(next(out.glob("*.h5"))).keys()
    assert_clean_error(run_cli("models", "check", card.name, env=env), "not installed")
