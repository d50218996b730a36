"""Every model card: it validates, its architecture builds on the meta device with the parameter count and embedding
width the card records, and the parts medvl does not have fail with a clear message."""

from __future__ import annotations

import json

import pytest
import torch

from medvl.errors import ConfigError
from medvl.models.catalogue import CARDS_DIR, Catalogue, list_cards
from medvl.models.published import CardEncoder, build_card_backbone, count_parameters

CARDS = list_cards()
BUILDABLE = [c for c in CARDS if c.checkable]
NOT_BUILDABLE = [c for c in CARDS if c not in BUILDABLE]
#: the models the issue names, by card
NAMED = {"tile": {"uni", "uni2-h", "conch-v1", "conch-v1.5", "keep", "plip", "quiltnet-b-32", "biomedclip", "virchow",
                  "virchow2", "h-optimus-0", "h-optimus-1", "phikon", "phikon-v2", "prov-gigapath", "ctranspath",
                  "hibou-b", "kaiko-vits16", "lunit-vits8"},
         "slide": {"titan", "prism", "prov-gigapath-slide", "chief", "madeleine"},
         "ct": {"merlin", "ct-clip", "renalclip-resnet18"}}


def test_catalogue_covers_the_published_models():
    names = {c.name: c.modality for c in CARDS}
    assert len(CARDS) >= 20
    for modality, wanted in NAMED.items():
        assert {n for n in wanted if names.get(n) == modality} == wanted
    assert [c.modality for c in CARDS] == sorted((c.modality for c in CARDS), key=["tile", "slide", "ct"].index)


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_card_round_trips_and_cites_its_sources(card):
    raw = json.loads((CARDS_DIR / f"{card.name}.json").read_text())
    assert type(card).from_dict(card.to_dict()) == card
    assert raw["name"] == card.name and card.sources and card.citation and card.licence.weights
    assert card.weights.files


@pytest.mark.parametrize("card", BUILDABLE, ids=lambda c: c.name)
def test_meta_build_matches_card(card):
    backbone = build_card_backbone(card, device="meta")
    counted = sum(p.numel() for p in backbone.module.parameters())
    assert counted == card.params.counted
    if card.params.published:
        assert abs(counted - card.params.published) / card.params.published < 0.05, card.params.published_source
    encoder = CardEncoder(card, backbone)
    if card.tile is not None:
        x = torch.empty(2, 3, card.tile.input_px, card.tile.input_px, device="meta")
    elif card.slide is not None:  # a bag of tile features and their grid positions
        feats = torch.empty(1, 8, card.slide.feature_dim, device="meta")
        out = encoder.encode((feats, torch.zeros(1, 8, 2, dtype=torch.long, device="meta")))
        assert tuple(out.shape) == (1, card.embedding.dim)
        return
    else:
        x_, y_, z_ = card.volume.size
        x = torch.empty(1, 1, z_, x_, y_, device="meta")
    assert tuple(encoder.encode(x).shape) == (x.shape[0], card.embedding.dim)


def test_reduced_variant_keeps_the_key_layout():
    """The reduced sizes the weight tests use change shapes and depth, never the key names of a layer."""
    import re

    from medvl.models.card_weights import expected_shapes

    def layout(shapes):
        return {re.sub(r"\.\d+\.", ".#.", k) for k in shapes}

    for card in BUILDABLE:
        assert layout(expected_shapes(card)) == layout(expected_shapes(card, card.reduced.kwargs)), card.name
    assert count_parameters(BUILDABLE[0], BUILDABLE[0].reduced.kwargs) < 10e6


@pytest.mark.parametrize("card", NOT_BUILDABLE, ids=lambda c: c.name)
def test_unavailable_parts_fail_clearly(card):
    assert card.not_available, "a card medvl cannot build must say what is not available"
    with pytest.raises(ConfigError, match="not available in medvl|--trust-remote-code"):
        build_card_backbone(card, device="meta")


def test_remote_code_needs_the_flag_and_a_local_folder(tmp_path):
    from medvl.errors import InputError
    from medvl.models.builders import BuildContext, build_backbone

    titan = Catalogue().get("titan")
    assert titan.remote_code.own_implementation and titan.builder.name == "medvl"
    remote = {"encode": titan.remote_code.encode}
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        build_backbone("hf-remote", remote, BuildContext(tmp_path, trust_remote_code=False))
    with pytest.raises(InputError, match="hub folder"):
        build_backbone("hf-remote", remote, BuildContext(tmp_path, trust_remote_code=True))


def test_unknown_builder_is_a_clear_error(tmp_path):
    card = json.loads((CARDS_DIR / "uni.json").read_text())
    card.update(name="my-uni", builder={"name": "keras", "kwargs": {}})
    (tmp_path / "my-uni.json").write_text(json.dumps(card))
    user = Catalogue([CARDS_DIR, tmp_path]).get("my-uni")
    with pytest.raises(ConfigError, match="unknown builder 'keras'; known: .*timm"):
        build_card_backbone(user, device="meta")


def test_user_cards_cannot_shadow_built_in_names(tmp_path):
    (tmp_path / "uni.json").write_text((CARDS_DIR / "uni.json").read_text())
    with pytest.raises(ConfigError, match="already defined"):
        Catalogue([CARDS_DIR, tmp_path])


def test_malformed_card_names_the_file_and_key(tmp_path):
    card = json.loads((CARDS_DIR / "uni.json").read_text())
    del card["tile"]
    (tmp_path / "bad.json").write_text(json.dumps({**card, "name": "bad"}))
    with pytest.raises(ConfigError, match="needs a 'tile' section.*bad.json"):
        Catalogue([tmp_path])
    (tmp_path / "bad.json").write_text(json.dumps({**card, "name": "bad", "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        Catalogue([tmp_path])


def test_medvl_cards_env_adds_folders(tmp_path, monkeypatch):
    card = json.loads((CARDS_DIR / "uni.json").read_text())
    (tmp_path / "lab-uni.yaml").write_text(json.dumps({**card, "name": "lab-uni"}))  # JSON is valid YAML
    monkeypatch.setenv("MEDVL_CARDS", str(tmp_path))
    assert "lab-uni" in {c.name for c in list_cards("tile")}
