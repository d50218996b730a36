"""Slide encoders over tile features: medvl's architectures, the checks against the card, and ``medvl slide embed``."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from medvl.errors import InputError
from medvl.io.features import FeatureStore, TileTable
from medvl.models.catalogue import get_card
from medvl.models.published import build_card_backbone
from medvl.models.slide_arch import DilatedAttention, GatedABMIL, sincos_2d
from medvl.pathology.slide_embed import embed_slides, grid_positions
from medvl.pathology.slide_encoders import SlideEncoderSpec
from tests.conftest import assert_clean_error, run_cli

SLIDE_CARDS = ["prov-gigapath-slide", "titan", "prism", "chief"]


def _dense_reference(attn: DilatedAttention, x: torch.Tensor) -> torch.Tensor:
    """Dilated attention written with explicit masks over the full sequence (no padding: N divides every segment)."""
    b, n, d = x.shape
    h = attn.heads
    q, k, v = (p(x).view(b, n, h, -1).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    idx = torch.arange(n)
    outs, lses = [], []
    for w, r in zip(attn.segments, attn.ratios, strict=True):
        w = min(w, n)
        group = torch.arange(h) // (h // r)
        same_seg = (idx[:, None] // w) == (idx[None, :] // w)
        offset = (idx % w) % r
        mask = same_seg[None] & (offset[None, :, None] == group[:, None, None]) & (offset[None, None, :] ==
                                                                                  group[:, None, None])
        s = scores.masked_fill(~mask[None], float("-inf"))
        lse = torch.logsumexp(s, -1)
        out = torch.nan_to_num(torch.softmax(s, -1)) @ v
        outs.append(out)
        lses.append(lse)
    weights = torch.softmax(torch.stack(lses), 0)
    out = (torch.stack(outs) * weights[..., None]).sum(0).transpose(1, 2).reshape(b, n, d)
    return attn.out_proj(attn.inner_attn_ln(out))


def test_dilated_attention_matches_masked_dense_attention():
    torch.manual_seed(0)
    attn = DilatedAttention(32, 8, [4, 8, 16], [1, 2, 4]).eval()
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _dense_reference(attn, x), atol=1e-5, rtol=1e-5)
        full = DilatedAttention(32, 8, [1024], [1], subln=False).eval()
        q, k, v = (p(x).view(2, 16, 8, 4).transpose(1, 2) for p in (full.q_proj, full.k_proj, full.v_proj))
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 16, 32)
        torch.testing.assert_close(full(x), full.out_proj(ref), atol=1e-5, rtol=1e-5)
        # chunked over segments gives the same result as one pass
        attn.chunk_elements = 64
        torch.testing.assert_close(attn(x), _dense_reference(attn, x), atol=1e-5, rtol=1e-5)


def test_sincos_grid_embedding_has_mae_layout():
    emb = sincos_2d(8, torch.tensor([[3, 5]]))[0]  # column 3, row 5
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    want = np.concatenate([np.sin(5 * omega), np.cos(5 * omega), np.sin(3 * omega), np.cos(3 * omega)])
    np.testing.assert_allclose(emb.numpy(), want, atol=1e-6)


def test_gated_abmil_pools_the_input_features():
    torch.manual_seed(0)
    model = GatedABMIL(in_dim=12, hidden=8, attn_dim=4).eval()
    feats = torch.randn(1, 5, 12)
    with torch.no_grad():
        a = model.attention_net[3](model.attention_net[:3](feats))[..., 0].softmax(-1)
        torch.testing.assert_close(model(feats), (a[..., None] * feats).sum(1))
    assert {k.split(".")[0] for k in model.state_dict()} == {"attention_net"}


@pytest.mark.parametrize("name", SLIDE_CARDS)
def test_slide_cards_build_and_embed(name):
    card = get_card(name)
    backbone = build_card_backbone(card, card.reduced.kwargs)
    feats = torch.randn(1, 12, card.slide.feature_dim)
    grid = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), indexing="xy"), -1).reshape(1, 12, 2)
    with torch.no_grad():
        out = backbone.pooled((feats, grid))
    assert out.shape == (1, card.reduced.dim or card.embedding.dim) and torch.isfinite(out).all()


def test_grid_positions_and_collapsed_grid():
    coords = np.array([[0, 0], [1024, 0], [0, 1024], [2048, 1024]])
    np.testing.assert_array_equal(grid_positions(coords, 1024), [[0, 0], [1, 0], [0, 1], [2, 1]])
    with pytest.raises(InputError, match="collapse onto the same grid cell"):
        grid_positions(coords, 4096)  # a stride for another magnification: tiles fall in one cell
    with pytest.raises(InputError, match="grid holds 2"):
        grid_positions(coords, 1024, limit=2)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture
def lab_titan(tmp_path, monkeypatch):
    """A user card with TITAN's slide section and a small architecture, its weights in medvl's layout, and features
    of 'conch-v1.5' tiles (512 px at 0.5 µm/px) in a feature file."""
    from safetensors.torch import save_file

    data = get_card("titan").to_dict()
    data.update(name="lab-titan", remote_code=None, reduced={})
    data["builder"]["kwargs"].update(dim=32, depth=2, heads=4)
    data["embedding"]["dim"] = 32
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "lab-titan.json").write_text(json.dumps(data))
    monkeypatch.setenv("MEDVL_CARDS", str(cards))
    monkeypatch.setenv("MEDVL_MODELS", str(tmp_path / "store"))
    card = get_card("lab-titan")
    torch.manual_seed(1)
    module = build_card_backbone(card).module.eval()
    weights = tmp_path / "weights"
    weights.mkdir()
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights / "model.safetensors"))
    feats_dir = tmp_path / "features"
    feats_dir.mkdir()
    rng = np.random.default_rng(0)
    coords = np.array([[x * 1024, y * 1024] for y in range(3) for x in range(4)])  # 40x scan: 512 px at 20x = 1024
    attrs = {"mpp": 0.5, "tile_px": 512, "patch_size_level0": 1024, "encoder": "conch-v1.5@sha256:ab/card:cd"}
    feats = rng.normal(size=(12, 768)).astype(np.float32)
    FeatureStore(feats_dir / "s1.h5").write(TileTable(coords=coords, attrs=attrs, features=feats))
    return card, module, weights, feats_dir, (feats, coords, attrs)


def test_embed_equals_the_module_forward(lab_titan, tmp_path):
    from medvl.io.embeddings import load_embeddings

    card, module, weights, feats_dir, (feats, coords, attrs) = lab_titan
    out = tmp_path / "slides.npz"
    summary = embed_slides(feats_dir, SlideEncoderSpec(card.name, str(weights), device="cpu"), out)
    assert summary["counts"] == {"ok": 1, "error": 0} and summary["warnings"] == []
    emb = load_embeddings(out)
    assert list(emb.ids) == ["s1"] and emb.modality == "slide" and emb.encoder.startswith("lab-titan@")
    grid = torch.from_numpy(coords // 1024)[None]
    with torch.no_grad():
        want = module(torch.from_numpy(feats)[None], grid)[0].numpy()
    np.testing.assert_allclose(emb.embeddings[0], want, atol=1e-5, rtol=1e-5)


def _write(path, feats, coords, attrs):
    FeatureStore(path).write(TileTable(coords=coords, attrs=attrs, features=feats))


@pytest.mark.parametrize(("change", "needle"), [
    ({"mpp": 1.0, "tile_px": 256, "patch_size_level0": 512},
     "tiled at 1 µm/px (10x), but slide encoder 'lab-titan' needs 512 px tiles"),
    ({"tile_px": 256}, "tiles of 256 px, but slide encoder"),
    ({"encoder": "uni@sha256:00/card:11"}, "features of 'uni', but slide encoder"),
    ({"patch_size_level0": 4096}, "collapse onto the same grid cell"),
])
def test_wrong_tiling_is_one_clear_error(lab_titan, tmp_path, change, needle):
    card, _, weights, _, (feats, coords, attrs) = lab_titan
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad / "s2.h5", feats, coords, {**attrs, **change})
    out = tmp_path / "slides.npz"
    with pytest.raises(InputError, match=re.escape(needle)):
        embed_slides(bad, SlideEncoderSpec(card.name, str(weights), device="cpu"), out)
    assert not out.exists()


def test_wrong_magnification_from_the_cli(lab_titan, tmp_path):
    card, _, weights, _, (feats, coords, attrs) = lab_titan
    bad = tmp_path / "s10x.h5"
    _write(bad, feats[:, :768], coords // 2, {**attrs, "mpp": 1.0, "patch_size_level0": 512})
    out = tmp_path / "slides.npz"
    r = run_cli("slide", "embed", bad, "--encoder", card.name, "--weights", weights, "--out", out, "--device", "cpu",
                env={"MEDVL_CARDS": str(tmp_path / "cards"), "MEDVL_MODELS": str(tmp_path / "store")})
    assert_clean_error(r, "s10x.h5", "tiled at 1 µm/px (10x)", "needs 512 px tiles at 0.5 µm/px (20x)",
                       "--encoder conch-v1.5")
    assert not out.exists()


def test_unknown_slide_encoder_lists_the_slide_cards(lab_titan, tmp_path):
    from medvl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown slide encoder 'uni'; slide model cards: .*titan"):
        embed_slides(lab_titan[3], SlideEncoderSpec("uni"), tmp_path / "x.npz")


@pytest.mark.parametrize(("name", "file", "wrap", "extra"), [
    ("prov-gigapath-slide", "slide_encoder.pth", "model", {}),
    ("chief", "CHIEF_pretraining.pth", None, {"classifiers.weight": torch.zeros(2, 512),
                                               "text_to_vision.0.weight": torch.zeros(768, 768)}),
])
def test_published_layout_loads_and_embeds(tmp_path, name, file, wrap, extra):
    """Random weights saved as the source publishes them (a torch file, the state under 'model' for Prov-GigaPath;
    CHIEF's other heads beside the attention) pass the check and give the module's own output."""
    from medvl.models.card_weights import check_weights
    from medvl.models.published import load_card_encoder

    card = get_card(name)
    torch.manual_seed(0)
    module = build_card_backbone(card, card.reduced.kwargs).module.eval()
    state = {**module.state_dict(), **extra}
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save({wrap: state} if wrap else state, folder / file)
    report = check_weights(card, folder, kwargs=card.reduced.kwargs)
    assert report.ok and report.matched == report.expected, report.problem()
    encoder = load_card_encoder(card, folder, reduced=True)
    feats, grid = torch.randn(1, 6, card.slide.feature_dim), torch.tensor([[[0, 0], [1, 0], [2, 0], [0, 1], [1, 1],
                                                                            [2, 1]]])
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode((feats, grid)), module(feats, grid))


REMOTE_SLIDE_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class LabSlideConfig(PretrainedConfig):
    model_type = "labslide"


class LabSlide(PreTrainedModel):
    config_class = LabSlideConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(768, 32)
        self.post_init()

    def encode_slide_from_patch_features(self, feats, coords, patch_size_lv0):
        weights = torch.softmax(-coords.float().sum(-1) / patch_size_lv0, dim=-1)
        return self.proj((weights[..., None] * feats).sum(1))
'''


def test_remote_code_runs_only_with_the_flag(lab_titan, tmp_path, monkeypatch):
    """A hub folder with its own code: medvl's implementation refuses its keys; --trust-remote-code runs it with the
    features, the level-0 coordinates and patch_size_level0, as the card's remote_code section says."""
    from safetensors.torch import save_file

    from medvl.io.embeddings import load_embeddings

    card_dict = get_card("titan").to_dict()
    card_dict.update(name="hub-titan", reduced={})
    card_dict["embedding"]["dim"] = 32
    (tmp_path / "cards" / "hub-titan.json").write_text(json.dumps(card_dict))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "modeling_labslide.py").write_text(REMOTE_SLIDE_CODE)
    (hub / "config.json").write_text(json.dumps({"model_type": "labslide", "architectures": ["LabSlide"], "auto_map": {
        "AutoConfig": "modeling_labslide.LabSlideConfig", "AutoModel": "modeling_labslide.LabSlide"}}))
    weight, bias = torch.randn(32, 768), torch.randn(32)
    save_file({"proj.weight": weight, "proj.bias": bias}, str(hub / "model.safetensors"))
    feats_dir = lab_titan[3]
    feats, coords, _ = lab_titan[4]
    with pytest.raises(InputError, match="weights do not match card 'hub-titan'.*runs with its own code under "
                                         "--trust-remote-code"):
        embed_slides(feats_dir, SlideEncoderSpec("hub-titan", str(hub), device="cpu"), tmp_path / "a.npz")
    out = tmp_path / "b.npz"
    summary = embed_slides(feats_dir, SlideEncoderSpec("hub-titan", str(hub), trust_remote_code=True, device="cpu"),
                           out)
    assert summary["encoder"].endswith(":remote-code")
    w = torch.softmax(-torch.from_numpy(coords).float().sum(-1) / 1024, dim=-1)
    want = (w[:, None] * torch.from_numpy(feats)).sum(0) @ weight.T + bias
    np.testing.assert_allclose(load_embeddings(out).embeddings[0], want.numpy(), atol=1e-4)
