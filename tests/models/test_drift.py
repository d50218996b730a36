"""Facts the weights' shapes do not show (activation, normalisation, interpolation), checked against the config
files published beside the weights."""

from __future__ import annotations

import json

import pytest

from medvl.errors import InputError
from medvl.models.catalogue import get_card
from medvl.models.drift import config_drift
from medvl.models.published import load_card_encoder
from tests.models.card_references import reduced_card_dict, reference_for


def _folder(tmp_path, name):
    card = get_card(name)
    folder = tmp_path / name
    folder.mkdir()
    reference_for(card)(card, {**card.builder.kwargs, **card.reduced.kwargs}, folder)
    return card, folder


def test_open_clip_quick_gelu_mismatch_is_refused(tmp_path):
    card, folder = _folder(tmp_path, "quiltnet-b-32")
    vision = {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}
    cfg = {"model_cfg": {"embed_dim": 512, "quick_gelu": True, "vision_cfg": vision},
           "preprocess_cfg": {"mean": list(card.tile.mean), "std": list(card.tile.std)}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    drift = config_drift(card, folder)
    assert drift.errors == ["open_clip_config.json has quick_gelu=True, the card says False"]
    with pytest.raises(InputError, match="quick_gelu=True, the card says False"):
        load_card_encoder(card, folder, reduced=True)


def test_timm_hub_statistics_and_interpolation(tmp_path):
    card, folder = _folder(tmp_path, "lunit-vits8")
    cfg = {"architecture": "vit_small_patch8_224.lunit_dino", "model_args": {"dynamic_img_size": False},
           "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": list(card.tile.std), "interpolation": "bilinear"}}
    (folder / "config.json").write_text(json.dumps(cfg))
    drift = config_drift(card, folder)
    assert len(drift.errors) == 1 and "mean=[0.485, 0.456, 0.406]" in drift.errors[0]
    assert any("interpolation='bilinear'" in w for w in drift.warnings)
    assert any("dynamic_img_size" in w for w in drift.warnings)  # does not change the embedding: a warning
    cfg["pretrained_cfg"]["mean"] = list(card.tile.mean)
    (folder / "config.json").write_text(json.dumps(cfg))
    assert config_drift(card, folder).errors == []


def test_hf_clip_config_compares_the_vision_side(tmp_path):
    card, folder = _folder(tmp_path, "plip")
    vision = dict(reduced_card_dict(card)["builder"]["kwargs"]["config"])
    projection = vision.pop("projection_dim")
    cfg = {"vision_config": {**vision, "hidden_act": "gelu"}, "projection_dim": projection}
    (folder / "config.json").write_text(json.dumps(cfg))
    errors = config_drift(card, folder).errors
    assert errors and all("config.json has" in e for e in errors)
    assert any("hidden_act='gelu', the card says 'quick_gelu'" in e for e in errors)
