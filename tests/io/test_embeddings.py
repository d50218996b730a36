"""Embedding files: one layout per suffix, every field and the provenance kept, bad files refused cleanly."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medvl.errors import ConfigError, InputError
from medvl.io.embeddings import EmbeddingSet, h5_layout, is_tile_features, load_embeddings, save_embeddings

SUFFIXES = [".npz", ".parquet", ".csv", ".h5"]


def _example(n: int = 5, d: int = 7) -> EmbeddingSet:
    rng = np.random.default_rng(0)
    return EmbeddingSet(rng.normal(size=(n, d)).astype(np.float32), ids=np.array([f"00{i}" for i in range(n)]),
                        labels=np.array(["rcc", "cyst", "rcc", "normal", "cyst"][:n]),
                        split=np.array(["train", "train", "val", "test", "test"][:n]), encoder="resnet3d-tiny",
                        modality="volume", projected=False, coords=np.arange(2 * n).reshape(n, 2))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_suffix_round_trips_rows_and_provenance(tmp_path, suffix):
    emb = _example()
    path = save_embeddings(tmp_path / f"e{suffix}", emb)
    back = load_embeddings(path)
    np.testing.assert_array_equal(back.embeddings, emb.embeddings)  # float32 survives even the CSV text
    assert back.embeddings.dtype == np.float32
    assert list(back.ids) == ["000", "001", "002", "003", "004"]  # leading zeros kept: ids stay text
    assert list(back.labels) == list(emb.labels) and list(back.split) == list(emb.split)
    np.testing.assert_array_equal(back.coords, emb.coords)
    assert (back.encoder, back.modality, back.projected) == ("resnet3d-tiny", "volume", False)
    assert not list(tmp_path.glob("*.tmp-medvl"))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_projected_flag_and_missing_fields(tmp_path, suffix):
    vectors = np.eye(3, 4, dtype=np.float32)
    back = load_embeddings(save_embeddings(tmp_path / f"p{suffix}", EmbeddingSet(vectors, projected=True,
                                                                                 encoder="/models/ckpt")))
    assert back.projected is True and back.encoder == "/models/ckpt" and back.modality is None
    assert back.ids is None and back.labels is None and back.split is None and back.coords is None
    bare = load_embeddings(save_embeddings(tmp_path / f"b{suffix}", EmbeddingSet(vectors)))
    assert bare.projected is None and bare.encoder is None


def test_numeric_labels_round_trip(tmp_path):
    emb = EmbeddingSet(np.ones((3, 2), np.float32), labels=np.array([0, 1, 1]))
    for suffix in SUFFIXES:
        back = load_embeddings(save_embeddings(tmp_path / f"n{suffix}", emb))
        assert back.labels.tolist() == [0, 1, 1], suffix


def test_layouts_are_what_other_tools_read(tmp_path):
    emb = _example()
    save_embeddings(tmp_path / "e.npz", emb)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert {"embeddings", "ids", "labels", "split", "coords", "encoder", "modality", "projected"} <= set(z.files)
        assert bool(z["projected"]) is False and str(z["modality"]) == "volume"
    save_embeddings(tmp_path / "e.parquet", emb)
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column_names[:3] == ["case_id", "label", "split"] and "emb_6" in table.column_names
    assert table.schema.metadata[b"encoder"] == b"resnet3d-tiny" and table.schema.metadata[b"projected"] == b"false"
    save_embeddings(tmp_path / "e.csv", emb)
    frame = pd.read_csv(tmp_path / "e.csv")
    assert {"case_id", "label", "split", "emb_0", "encoder", "modality", "projected"} <= set(frame.columns)
    save_embeddings(tmp_path / "e.h5", emb)
    with h5py.File(tmp_path / "e.h5") as f:
        assert f["embeddings"].shape == (5, 7) and f["ids"].asstr()[0] == "000"
        assert f.attrs["encoder"] == "resnet3d-tiny" and f.attrs["projected"] is not None
    assert h5_layout(tmp_path / "e.h5") == "cases"


def test_h5_feature_store_is_still_read_as_tiles(tmp_path):
    from medvl.io.features import FeatureStore, TileTable

    feats = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    coords = np.stack([np.arange(4) * 224, np.zeros(4)], axis=1)
    FeatureStore(tmp_path / "slide.h5").write(
        TileTable(coords, {"mpp": 0.5, "tile_px": 224, "encoder": "timm-tiny", "embed_dim": 8, "projected": False},
                  feats))
    assert h5_layout(tmp_path / "slide.h5") == "features"
    emb = load_embeddings(tmp_path / "slide.h5")
    np.testing.assert_array_equal(emb.embeddings, feats)
    np.testing.assert_array_equal(emb.coords, coords)
    assert (emb.encoder, emb.modality, emb.projected, emb.ids) == ("timm-tiny", "image", False, None)


def test_case_h5_is_indexed_per_case_not_pooled_as_a_slide(tmp_path):
    """A case-embeddings .h5 (as `ct embed` writes) keeps one row per case in a slide-level index."""
    from medvl.provenance import ModelPrint, Provenance
    from medvl.tasks.retrieval.build import build_index

    vectors = np.eye(3, 8, dtype=np.float32)
    made_by = Provenance(model=ModelPrint(encoder="t", weights="w", config="c", modality="volume"))
    save_embeddings(tmp_path / "cases.h5", EmbeddingSet(vectors, ids=np.array(["a", "b", "c"]), encoder="t",
                                                        provenance=made_by))
    assert load_embeddings(tmp_path / "cases.h5").provenance == made_by
    assert not is_tile_features(tmp_path / "cases.h5")
    rec = build_index([tmp_path / "cases.h5"], tmp_path / "idx", level="slide")
    assert rec["count"] == 3


def test_bad_files_fail_with_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="must end in"):
        save_embeddings(tmp_path / "e.txt", _example())
    assert not (tmp_path / "e.txt").exists()
    with pytest.raises(ValueError, match="'ids' has 2 entries"):
        save_embeddings(tmp_path / "e.npz", EmbeddingSet(np.ones((3, 2), np.float32), ids=np.array(["a", "b"])))
    assert not list(tmp_path.iterdir())  # nothing partial left
    np.savez(tmp_path / "short.npz", embeddings=np.ones((3, 2)), ids=np.array(["a"]))
    pd.DataFrame({"case_id": ["a"], "x": [1.0]}).to_csv(tmp_path / "nocols.csv", index=False)
    pd.DataFrame({"case_id": ["a", "b"], "emb_0": [1.0, 2.0], "encoder": ["x", "y"]}).to_csv(tmp_path / "two.csv",
                                                                                          index=False)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f.create_dataset("embeddings", data=np.array([[np.nan, 1.0]]))
    cases = {"short.npz": "'ids' has 1 rows", "nocols.csv": "no embedding columns", "two.csv": "one value",
             "junk.parquet": "cannot read parquet", "junk.h5": "not a readable HDF5 file", "nan.h5": "NaN",
             "missing.npz": "not found"}
    for name, needle in cases.items():
        with pytest.raises(InputError, match=needle) as err:
            load_embeddings(tmp_path / name)
        assert name in str(err.value)


def test_tasks_module_re_exports_the_same_names():
    import medvl.io.embeddings as io_emb
    import medvl.io.embeddings as tasks_emb

    for name in ("EmbeddingSet", "load_embeddings", "save_embeddings"):
        assert getattr(tasks_emb, name) is getattr(io_emb, name)


@pytest.fixture(scope="module")
def ct_checkpoint(tmp_path_factory):
    """A tiny volume + text checkpoint that stores a small CT preprocessing (what training writes)."""
    import torch

    from medvl.models import create_model, save_checkpoint
    from medvl.models.multimodal import ModelConfig, TowerSpec
    from medvl.radiology.transforms import CTPreprocessConfig

    torch.manual_seed(0)
    model = create_model(ModelConfig(towers={"volume": TowerSpec("resnet3d-tiny"), "text": TowerSpec("hf-text-tiny")},
                                     embed_dim=32), random_weights=True)
    folder = tmp_path_factory.mktemp("ckpt") / "ct-clip"
    prep = CTPreprocessConfig(spacing=(4.0, 4.0, 4.0), spatial_size=(32, 32, 16))
    save_checkpoint(model, folder, extra={"ct_preprocess": prep.to_dict()})
    return folder


def test_ct_embed_output_feeds_zeroshot_and_the_index(tmp_path, ct_checkpoint):
    """``ct embed`` -> ``zeroshot`` / ``index build`` / ``index search``: ids kept, joint vectors not re-projected."""
    from medvl.radiology.cases import read_ct_cases
    from medvl.radiology.embed import embed_cases, load_volume_encoder
    from medvl.radiology.transforms import CTPreprocessConfig
    from medvl.resources import bundled
    from tests.conftest import assert_clean_error, run_cli

    ct = bundled("ct_small")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,path\nk1,{ct}\nk2,{ct}\n")
    joint, raw = tmp_path / "joint.npz", tmp_path / "raw.parquet"
    common = ("--cache", tmp_path / "cache", "--device", "cpu", "--json")
    r = run_cli("ct", "embed", manifest, "--model", ct_checkpoint, "-o", joint, "--random-weights", *common)
    assert r.returncode == 0, r.stderr
    # a bare tower's raw features, written by the same library call (in-process: one CLI start less)
    tower = load_volume_encoder("resnet3d-tiny", device="cpu", random_weights=True)
    prep = CTPreprocessConfig(spacing=(4.0, 4.0, 4.0), spatial_size=(32, 32, 16))
    assert embed_cases(read_ct_cases(manifest), prep, tower, raw)["embedded"] == 2
    stored = load_embeddings(joint)
    assert list(stored.ids) == ["k1", "k2"] and stored.projected is True and stored.modality == "volume"
    assert load_embeddings(raw).projected is False

    zs = run_cli("zeroshot", joint, "--model", ct_checkpoint, "--classes", "kidney cyst,renal cell carcinoma",
                 "--templates", "radiology", "--random-weights", "--json")
    assert zs.returncode == 0, zs.stderr
    rec = zs.json()
    assert rec["input"] == "embedding (volume)"  # the modality recorded by ct embed
    assert abs(sum(t["probability"] for t in rec["result"]["top"]) - 1) < 1e-3

    assert rec["provenance"]["vectors"]["model"]["random_weights"] is True
    # the bare tower's features are another encoder's (other weights), whatever the tower's name: refused
    index = tmp_path / "index"
    mixed = run_cli("index", "build", joint, raw, "--model", ct_checkpoint, "--out", index, "--random-weights")
    assert_clean_error(mixed, "raw.parquet", "does not match", "weights differ")
    b = run_cli("index", "build", joint, "--model", ct_checkpoint, "--out", index, "--random-weights", "--json")
    assert b.returncode == 0, b.stderr
    assert b.json()["count"] == 2 and b.json()["space"] == "joint"
    s = run_cli("index", "search", "--index", index, "--query", joint, "-k", "4", "--json")
    assert s.returncode == 0, s.stderr
    hits = s.json()["results"][0]["hits"]
    ours = [h for h in hits if h["source"] == "joint"]
    assert sorted(h["case_id"] for h in ours) == ["k1", "k2"]
    # the stored vectors went into the index as they are: a second projection would not score 1 against them
    assert all(h["score"] == pytest.approx(1.0, abs=1e-4) for h in ours)
