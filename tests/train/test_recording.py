"""Issue 16 item 4: preprocessing travels with the checkpoint (image transform, CT chain, data domain), and using a
checkpoint on another domain warns once, visibly, or fails with --strict-domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvl.errors import ConfigError
from medvl.log import collected_warnings
from medvl.models.checkpoint import read_checkpoint_config
from medvl.models.transforms import grayscale_transform
from medvl.resources import bundled, config_dir
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def ultrasound_model(tmp_path_factory) -> Path:
    """The tiny KEEP recipe on BreastMNIST at 32 px (grayscale ultrasound), two steps."""
    from medvl.train import TrainConfig, train

    cfg = TrainConfig.from_file(config_dir() / "tiny-keep.yaml")
    cfg = cfg.replace(stages=[cfg.stages[0].replace(steps=2)], device="cpu", tensorboard=False, threads=1)
    out = tmp_path_factory.mktemp("run") / "us"
    train(cfg, out)
    return out / "model"


def test_the_trainer_saves_the_image_transform_domain_and_trained_towers(ultrasound_model):
    from medvl.models import create_model

    meta = read_checkpoint_config(ultrasound_model)
    assert meta["preprocessing"]["image"] == grayscale_transform(32).to_dict()
    assert meta["domains"]["image"] == {"modality": "ultrasound", "channels": "grayscale", "stain": None}
    assert meta["random_weights"] == {"image": False, "text": False}  # trained: no --random-weights needed
    model = create_model(ultrasound_model)
    assert model.image_transform() == grayscale_transform(32)


def test_the_checkpoint_transform_is_applied_to_tiles_with_one_domain_warning(ultrasound_model, svs_path, tmp_path):
    """Issue 16: the demo CLIP (32x32 grayscale ultrasound) was fed 176x176 ImageNet-normalised RGB H&E tiles."""
    from medvl.pathology.extract import EncoderSpec, ExtractConfig, LazyTileEncoder
    from medvl.pathology.pipeline import SlideJob, extract_slide
    from medvl.pathology.tiling import TileConfig
    from medvl.pathology.tissue import TissueConfig

    encoder = LazyTileEncoder(EncoderSpec(name=str(ultrasound_model)))
    tiles = TileConfig(mpp=4.0, size=64, min_tissue=0)
    for name in ("one", "two"):  # two slides: the warning is given once, not per slide or per tile batch
        extract_slide(SlideJob(name, svs_path), tmp_path, tiles, TissueConfig(), encoder,
                      ExtractConfig(batch_size=4, workers=1, device="cpu"))
    enc = encoder.get()
    assert enc.transform == grayscale_transform(32)
    x = enc.preprocess(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8), "cpu")
    assert tuple(x.shape) == (2, 3, 32, 32) and bool((x[:, 0] == x[:, 1]).all())  # as trained: 32x32 grayscale
    warnings = collected_warnings()
    assert len(warnings) == 1 and "trained on ultrasound, grayscale images" in warnings[0]
    assert "slide, rgb" in warnings[0] and "--strict-domain" in warnings[0]
    with pytest.raises(ConfigError, match="trained on ultrasound"):
        LazyTileEncoder(EncoderSpec(name=str(ultrasound_model), strict_domain=True)).get()


def test_the_domain_warning_reaches_stderr_and_json_once_and_strict_refuses(ultrasound_model, svs_path, tmp_path):
    args = ("slide", "extract", svs_path, "--out", tmp_path, "--encoder", ultrasound_model, "--mpp", "2", "--size",
            "64", "--device", "cpu")
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    assert len([w for w in r.json()["warnings"] if "trained on ultrasound" in w]) == 1
    assert r.stderr.count("trained on ultrasound") == 1
    assert_clean_error(run_cli(*args, "--strict-domain", "--overwrite"), "trained on ultrasound", "--strict-domain")


def test_the_trainer_saves_the_ct_chain_and_ct_embed_uses_it(tmp_path):
    from medvl.models.multimodal import ModelConfig, TowerSpec
    from medvl.radiology.embed import load_volume_encoder
    from medvl.radiology.transforms import CTPreprocessConfig
    from medvl.train import TrainConfig, train
    from medvl.train.config import DataConfig, StageConfig

    ct = bundled("ct_small")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case_id,modality,path,report\na,ct,{ct},renal cyst\nb,ct,{ct},clear cell carcinoma\n")
    chain = CTPreprocessConfig(spacing=(6.0, 6.0, 6.0), spatial_size=(32, 32, 16))
    cfg = TrainConfig(
        model_config=ModelConfig(towers={"volume": TowerSpec("resnet3d-tiny"), "text": TowerSpec("hf-text-tiny")},
                                 embed_dim=16),
        data=DataConfig(dataset="ct-reports", batch_size=2, options={
            "manifest": str(manifest), "preprocess": chain.to_dict(), "cache": str(tmp_path / "cache")}),
        stages=[StageConfig(inputs=["volume", "text"], steps=2)], device="cpu", tensorboard=False, threads=1)
    train(cfg, tmp_path / "run")
    meta = read_checkpoint_config(tmp_path / "run" / "model")
    assert meta["preprocessing"]["volume"] == chain.to_dict() and meta["domains"]["volume"]["modality"] == "ct"
    encoder = load_volume_encoder(str(tmp_path / "run" / "model"), device="cpu")  # trained: no flag needed
    assert encoder.preprocess == chain and encoder.model_print.modality == "volume"
    assert not collected_warnings()  # CT on a CT model: no domain warning, and the chain is recorded


def test_an_ultrasound_image_file_gets_the_training_transform(ultrasound_model, tmp_path):
    import torch
    from PIL import Image

    from medvl.models.transforms import image_transform
    from medvl.tasks.space import JointSpace

    with np.load(bundled("breastmnist")) as data:
        image = data["test_images"][0]
    Image.fromarray(image).save(tmp_path / "us.png")  # a grayscale PNG (mode L)
    space = JointSpace.load(ultrasound_model)
    with torch.inference_mode():
        direct = space.model.encode_image(image_transform(image[None], grayscale_transform(32))).numpy()
    np.testing.assert_array_equal(space.encode_image_file(tmp_path / "us.png"), direct)
