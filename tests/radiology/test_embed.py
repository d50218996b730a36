"""Embedding files: formats with case ids, resume, and encoder/config fitting."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import ConfigError
from medvl.io.embeddings import load_embeddings
from medvl.radiology.cache import VolumeCache
from medvl.radiology.embed import embed_cases, load_volume_encoder, read_embeddings, write_embeddings
from medvl.radiology.preprocess import CTCase
from medvl.radiology.transforms import CTPreprocessConfig


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".parquet", ".csv"])
def test_formats_round_trip(tmp_path, suffix):
    emb = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    path = write_embeddings(tmp_path / f"e{suffix}", ["a", "b", "c"], emb, {"x": 1}, encoder="resnet3d-tiny",
                            projected=False)
    ids, back = read_embeddings(path)
    assert ids == ["a", "b", "c"]
    np.testing.assert_array_equal(back, emb)
    assert (tmp_path / f"e{suffix}.config.json").is_file()
    # the one layout the tasks read: ids and provenance come along
    full = load_embeddings(path)
    assert list(full.ids) == ids and (full.encoder, full.modality, full.projected) == ("resnet3d-tiny", "volume", False)
    with pytest.raises(ConfigError, match="must end in"):
        write_embeddings(tmp_path / "e.txt", ["a"], emb[:1], {}, encoder="resnet3d-tiny", projected=False)


def test_resume_and_same_embedding_for_same_volume(tmp_path, ct_small, dicom_series):
    cfg = CTPreprocessConfig(spacing=(3.0, 3.0, 3.0), spatial_size=(64, 64, 16))
    enc = load_volume_encoder("resnet3d-tiny", device="cpu", random_weights=True)
    cache = VolumeCache(tmp_path / "cache", cfg)
    out = tmp_path / "emb.npz"
    cases = [CTCase(ct_small, "nifti"), CTCase(dicom_series, "dicom")]
    first = embed_cases(cases[:1], cfg, enc, out, cache)
    assert first["embedded"] == 1
    both = embed_cases(cases, cfg, enc, out, cache)
    assert both["embedded"] == 1 and both["reused"] == 1
    ids, emb = read_embeddings(out)
    assert ids == ["nifti", "dicom"]
    assert load_embeddings(out).projected is False  # a bare tower's raw features
    # the DICOM series and the NIfTI it came from are the same scan: same preprocessing, same embedding
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-5)


def test_encoder_spec_errors():
    with pytest.raises(ConfigError, match="unknown tower 'nope'"):
        load_volume_encoder("nope")
    assert load_volume_encoder("vit3d-tiny", device="cpu", random_weights=True).input_shape == (16, 32, 32)


def test_checkpoint_carries_its_preprocessing(tmp_path, ct_small):
    from medvl.models import create_model, save_checkpoint
    from medvl.models.multimodal import ModelConfig, TowerSpec

    trained = CTPreprocessConfig(window="soft_tissue", spacing=(3.0, 3.0, 3.0), spatial_size=(48, 48, 16))
    model = create_model(ModelConfig(towers={"volume": TowerSpec("resnet3d-tiny")}, embed_dim=16), random_weights=True)
    save_checkpoint(model, tmp_path / "ckpt", extra={"ct_preprocess": trained.to_dict()})
    enc = load_volume_encoder(str(tmp_path / "ckpt"), device="cpu", random_weights=True)
    assert enc.preprocess == trained and enc.embed_dim == 16
    summary = embed_cases([CTCase(ct_small, "a")], enc.preprocess, enc, tmp_path / "e.npz")
    assert summary["embed_dim"] == 16
    emb = load_embeddings(tmp_path / "e.npz")
    assert np.linalg.norm(emb.embeddings[0]) == pytest.approx(1.0, abs=1e-5)  # joint-space embeddings are normalised
    # recorded as this checkpoint's joint space, so the tasks do not project them a second time
    assert (emb.encoder, emb.modality, emb.projected) == (str((tmp_path / "ckpt").resolve()), "volume", True)


def test_missing_preprocessing_is_warned_unless_the_checkpoint_is_untrained(tmp_path, caplog):
    from medvl.models import create_model, save_checkpoint
    from medvl.models.multimodal import ModelConfig
    from medvl.pipelines.config import ModelSource
    from medvl.pipelines.context import materialise_model

    config = {"towers": {"volume": {"name": "resnet3d-tiny"}}, "embed_dim": 16}
    model = create_model(ModelConfig.from_dict(config), random_weights=True)
    model.record_training("volume", trained=True)  # as the trainer marks a tower it trained (with no chain recorded)
    save_checkpoint(model, tmp_path / "trained")
    with caplog.at_level("WARNING", logger="medvl"):
        assert load_volume_encoder(str(tmp_path / "trained"), device="cpu").preprocess is None
    assert "stores no CT preprocessing config" in caplog.text

    caplog.clear()
    folder, _ = materialise_model(ModelSource(config=config, seed=3, random_weights=True), tmp_path / "models")
    with caplog.at_level("WARNING", logger="medvl"):
        assert load_volume_encoder(str(folder), device="cpu", random_weights=True).preprocess is None
    assert "stores no CT preprocessing" not in caplog.text


def test_ct_embed_reuses_a_case_only_when_weights_chain_and_input_match(tmp_path, ct_small):
    """Issue 16: `ct embed` "reused" the vectors of a checkpoint retrained into the same folder."""
    import shutil

    import torch

    from medvl.models import create_model, save_checkpoint
    from medvl.models.multimodal import ModelConfig, TowerSpec

    def checkpoint(seed: int) -> None:
        torch.manual_seed(seed)
        model = create_model(ModelConfig(towers={"volume": TowerSpec("resnet3d-tiny")}, embed_dim=16),
                             random_weights=True)
        save_checkpoint(model, tmp_path / "ckpt")

    cfg = CTPreprocessConfig(spacing=(6.0, 6.0, 6.0), spatial_size=(32, 32, 16))
    shutil.copyfile(ct_small, tmp_path / "b.nii.gz")
    cases = [CTCase(ct_small, "a"), CTCase(tmp_path / "b.nii.gz", "b")]
    out = tmp_path / "emb.npz"

    def run() -> dict:
        return embed_cases(cases, cfg, load_volume_encoder(str(tmp_path / "ckpt"), device="cpu", random_weights=True),
                           out)

    checkpoint(0)
    first = run()
    assert (first["embedded"], first["reused"]) == (2, 0) and run()["reused"] == 2
    before = load_embeddings(out)
    checkpoint(1)  # retrained into the same folder
    assert run()["embedded"] == 2
    after = load_embeddings(out)
    assert after.provenance.model.weights != before.provenance.model.weights
    assert not np.allclose(after.embeddings, before.embeddings)
    assert embed_cases(cases, cfg.replace(window="lung"), load_volume_encoder(str(tmp_path / "ckpt"), device="cpu",
                                                                             random_weights=True), out)["reused"] == 0
    run()
    import nibabel as nib

    img = nib.load(tmp_path / "b.nii.gz")  # the input of case b changes (same name, same id)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine), tmp_path / "b.nii.gz")
    again = run()
    assert (again["embedded"], again["reused"]) == (1, 1)
