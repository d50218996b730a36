"""``medvl slide embed --encoder CKPT`` (the resolver's ``checkpoint`` source): label-free slide (and volume)
embeddings from an LV-MAE bag tower."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.io.embeddings import load_embeddings
from medvl.io.features import FeatureStore, TileTable
from medvl.train import TrainConfig, train
from tests.conftest import assert_clean_error


def _features(folder, n_slides=6, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_slides):
        n = int(rng.integers(30, 60))
        coords = np.stack([np.arange(n) % 8, np.arange(n) // 8], 1) * 224
        base = rng.standard_normal(dim) * (1 + s % 2)
        feats = (base + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
        FeatureStore(folder / f"slide{s}.h5").write(TileTable(coords, {"encoder": "test", "tile_px": 224}, feats))


def _lvmae(features, out, dim, pos_dim=2, pos_scale=224.0, steps=15, batch=3):
    return train(TrainConfig.from_dict({
        "recipe": "lvmae", "seed": 0, "threads": 1, "checkpoint_every": 1000, "log_every": 5,
        "model_config": {"towers": {"bag": {"name": "bag-transformer", "options": {
            "in_dim": dim, "hidden": 16, "layers": 1, "heads": 2, "pos_dim": pos_dim, "pos_scale": pos_scale}}},
            "embed_dim": 8},
        "data": {"dataset": "bags", "options": {"features": str(features), "pos_dim": pos_dim, "max_items": 32},
                 "batch_size": batch},
        "stages": [{"name": "lvmae", "objective": "masked_embedding", "inputs": ["bag"], "losses": [],
                    "steps": steps, "objective_options": {"mask": {"ratio": 0.6, "block": 2},
                                                          "decoder_hidden": 16, "decoder_heads": 2}}],
    }), out)


def test_slide_embed_with_an_lvmae_checkpoint(tmp_path, cli):
    _features(tmp_path / "feats")
    summary = _lvmae(tmp_path / "feats", tmp_path / "run", dim=12)
    res = cli("slide", "embed", tmp_path / "feats", "--encoder", summary["model"], "--out", tmp_path / "e.npz",
              "--json")
    assert res.returncode == 0, res.stderr
    emb = load_embeddings(tmp_path / "e.npz")
    assert emb.embeddings.shape == (6, 16) and list(emb.ids) == [f"slide{i}" for i in range(6)]
    assert emb.projected is False and emb.modality == "slide" and emb.encoder == str(tmp_path / "run" / "model")
    # the same slide gives the same embedding whatever the order of its tiles (the tower sees positions)
    from medvl.io.features import read_features
    from medvl.pathology.slide_encoders import SlideEncoderSpec, load_slide_encoder

    enc = load_slide_encoder(SlideEncoderSpec(name=summary["model"], device="cpu"))
    feats, coords, attrs = read_features(tmp_path / "feats" / "slide0.h5")
    perm = np.random.default_rng(1).permutation(len(feats))
    grid = np.zeros((len(feats), 2), dtype=np.int64)  # the checkpoint's tower reads the level-0 coordinates
    assert np.allclose(enc.encode(feats, grid, {**attrs, "_coords": coords}),
                       enc.encode(feats[perm], grid, {**attrs, "_coords": coords[perm]}), atol=1e-4)
    # another tile encoder's features are refused before anything is written
    _features(tmp_path / "other", n_slides=2, dim=7)
    res = cli("slide", "embed", tmp_path / "other", "--encoder", summary["model"], "--out", tmp_path / "bad.npz")
    assert_clean_error(res, "7-d", "12-d")
    assert not (tmp_path / "bad.npz").exists()
    res = cli("slide", "embed", tmp_path / "feats", "--encoder", tmp_path / "nothing", "--out", tmp_path / "b.npz")
    assert_clean_error(res, "unknown slide encoder", "bag tower")


@pytest.mark.parametrize("tower", ["slices2.5d-tiny"])
def test_ct_volumes_as_slice_bags_train_lvmae_and_embed(tmp_path, ct_path, cli, tower):
    res = cli("ct", "slices", ct_path, "--out", tmp_path / "slices", "--tower", tower, "--size", "64,64,30")
    assert_clean_error(res, "no weights", "--random-weights")  # an untrained tower only on purpose
    res = cli("ct", "slices", ct_path, "--out", tmp_path / "slices", "--tower", tower, "--size", "64,64,30",
              "--random-weights", "--json")
    assert res.returncode == 0, res.stderr
    rec = res.json()
    assert rec["written"] == 1 and rec["cases"][0]["slices"] == 30
    summary = _lvmae(tmp_path / "slices", tmp_path / "run", dim=rec["dim"], pos_dim=1, pos_scale=1.0, steps=5,
                     batch=1)
    res = cli("slide", "embed", tmp_path / "slices", "--encoder", summary["model"], "--out", tmp_path / "v.npz")
    assert res.returncode == 0, res.stderr
    assert load_embeddings(tmp_path / "v.npz").embeddings.shape == (1, 16)
