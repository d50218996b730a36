"""Model cards by name beyond ``slide extract``: ``ct embed --encoder CARD`` and ``zeroshot --model CARD``, run as a
user would, offline, from models installed in the local store with weights in the published layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_clean_error, run_cli
from tests.models.card_references import reduced_card_dict, reference_for


def _install(tmp_path, base: str, name: str, write, zero_shot: dict | None = None) -> tuple:
    """A reduced user card of ``base`` named ``name`` (``zero_shot.text_options`` updated from ``zero_shot``), its
    weights written by ``write(card, folder)``, packed and installed into a fresh store; returns (card, env with
    only the store, weights folder, what write returned)."""
    from medvl.models.card import ModelCard
    from medvl.models.catalogue import get_card
    from medvl.models.store import ModelStore, pack_bundle, unpack_bundle

    data = reduced_card_dict(get_card(base))
    data["name"] = name
    data["zero_shot"].setdefault("text_options", {}).update(zero_shot or {})
    card = ModelCard.from_dict(data)
    folder = tmp_path / f"{name}-weights"
    folder.mkdir()
    torch.manual_seed(0)
    extra = write(card, folder)
    from medvl.models.card_weights import find_weight_file

    pack_bundle(card, find_weight_file(card, folder), tmp_path / f"{name}.tar")
    store = tmp_path / "store"
    unpack_bundle(tmp_path / f"{name}.tar", ModelStore(store))
    return card, {"MEDVL_MODELS": str(store)}, folder, extra


# ------------------------------------------------------------------------------------------------ ct embed
def _renal_weights(card, folder):
    return reference_for(card)(card, card.builder.kwargs, folder)[1]  # MONAI's ResNet-18, RenalCLIP's checkpoint


def test_ct_embed_by_card_name_applies_and_records_the_cards_chain(tmp_path, ct_path):
    card, env, _, reference = _install(tmp_path, "renalclip-resnet18", "lab-renal", _renal_weights)
    out = tmp_path / "emb.npz"
    r = run_cli("ct", "embed", ct_path, "--encoder", card.name, "--out", out, "--device", "cpu", "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = r.json()
    assert summary["embedded"] == 1 and summary["embed_dim"] == card.embedding.dim
    from medvl.io.embeddings import load_embeddings
    from medvl.radiology.card_encoder import card_ct_preprocess
    from medvl.radiology.preprocess import CTCase, preprocess_case

    emb = load_embeddings(out)
    chain = card_ct_preprocess(card)
    assert chain.spacing == tuple(card.volume.spacing_mm) and chain.spatial_size == tuple(card.volume.size)
    assert (chain.level - chain.width / 2, chain.level + chain.width / 2) == tuple(card.volume.hu_window)
    assert emb.provenance.preprocessing == chain.to_dict()  # the card's chain, recorded
    assert emb.provenance.model.encoder.startswith("lab-renal@sha256:")
    # the same vector as MONAI's own network on the chain's output, in the card's tensor layout (C, D, W, H)
    volume = preprocess_case(CTCase(ct_path, "case"), chain).array  # [1, z, y, x]
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.ascontiguousarray(volume)).float().transpose(-1, -2)[None])
    np.testing.assert_allclose(emb.embeddings[0], expected[0].numpy(), rtol=1e-4, atol=1e-5)
    again = run_cli("ct", "embed", ct_path, "--encoder", card.name, "--out", out, "--device", "cpu", "--json", env=env)
    assert again.json()["reused"] == 1  # same card, weights and chain: reused


def test_ct_embed_card_errors(tmp_path, ct_path):
    env = {"MEDVL_MODELS": str(tmp_path / "store")}
    out = tmp_path / "emb.npz"
    r = run_cli("ct", "embed", ct_path, "--encoder", "renalclip-resnet18", "--out", out, env=env)
    assert_clean_error(r, "renalclip-resnet18", "not installed")
    assert_clean_error(run_cli("ct", "embed", ct_path, "--encoder", "merlin", "--out", out, env=env),
                       "merlin", "not available")
    assert_clean_error(run_cli("ct", "embed", ct_path, "--encoder", "uni", "--out", out, env=env),
                       "uni", "not a ct encoder")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ zeroshot
def _plip_folder(card, folder):
    """A Hugging Face CLIPModel folder as PLIP publishes it (config.json, model.safetensors, tokenizer files), the
    vision side at the card's reduced size; returns the source model."""
    from transformers import CLIPConfig, CLIPModel

    from medvl.models.text import tiny_tokenizer

    tok = tiny_tokenizer()
    vision = {k: v for k, v in card.builder.kwargs["config"].items() if k != "projection_dim"}
    text = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 64, "pad_token_id": tok.pad_token_id}
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=card.builder.kwargs["config"]["projection_dim"])).eval()
    clip.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return clip


@pytest.fixture
def plip(tmp_path):
    return _install(tmp_path, "plip", "lab-plip", _plip_folder)


def test_extract_then_zeroshot_by_card_name(plip, tmp_path, svs_path):
    card, env, folder, clip = plip
    feats = tmp_path / "feats"
    r = run_cli("slide", "extract", svs_path, "--encoder", card.name, "--out", feats, "--device", "cpu",
                "--mpp", "8", "--json", env=env)
    assert r.returncode == 0, r.stderr
    h5 = next(feats.glob("*.h5"))
    z = run_cli("zeroshot", h5, "--model", card.name, "--classes", "breast cancer,normal tissue", "--json", env=env)
    assert z.returncode == 0, z.stderr
    rec = z.json()
    assert rec["provenance"]["model"]["weights"].startswith("lab-plip@sha256:")
    probs = {t["name"]: t["probability"] for t in rec["result"]["top"]}
    assert set(probs) == {"breast cancer", "normal tissue"} and abs(sum(probs.values()) - 1) < 1e-4
    # the text side is the CLIP text tower of the same folder: its prompts match the source model's
    from medvl.models.card_models import card_joint_model

    model = card_joint_model(card.name, store=env["MEDVL_MODELS"])
    tok = model.tokenizer
    enc = tok(["normal tissue"], padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = clip.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
        ref = torch.nn.functional.normalize(clip.text_projection(pooled), dim=-1)
        torch.testing.assert_close(model.encode_text(["normal tissue"]), ref)


def test_zeroshot_refuses_features_of_another_encoder(plip, tmp_path, svs_path):
    card, env, *_ = plip
    feats = tmp_path / "feats"
    r = run_cli("slide", "extract", svs_path, "--encoder", "timm-tiny", "--random-weights", "--out", feats,
                "--device", "cpu", "--mpp", "8", "--size", "64", env=env)
    assert r.returncode == 0, r.stderr
    z = run_cli("zeroshot", next(feats.glob("*.h5")), "--model", card.name, "--classes", "a,b", env=env)
    assert_clean_error(z, "extract them again", f"--encoder {card.name}")


def test_zeroshot_card_errors(tmp_path, svs_path):
    env = {"MEDVL_MODELS": str(tmp_path / "store")}
    case = tmp_path / "x.h5"
    case.write_bytes(b"")
    assert_clean_error(run_cli("zeroshot", case, "--model", "plip", "--classes", "a,b", env=env),
                       "plip", "not installed")
    assert_clean_error(run_cli("zeroshot", case, "--model", "uni", "--classes", "a,b", env=env),
                       "'uni' cannot serve as a zero-shot model", "image-text space")
    assert_clean_error(run_cli("zeroshot", case, "--model", "biomedclip", "--classes", "a,b", env=env),
                       "'biomedclip' cannot serve as a zero-shot model", "text tower")


def test_apps_model_picker_offers_installed_zero_shot_cards(plip, tmp_path, monkeypatch):
    """The apps' model picker lists vision-language cards of the store beside checkpoints, and opens them."""
    from medvl.apps.catalog import scan_workspace
    from medvl.tasks.space import JointSpace

    card, env, *_ = plip
    _install(tmp_path, "uni", "lab-uni", lambda c, f: reference_for(c)(c, c.builder.kwargs, f))  # no text tower
    monkeypatch.setenv("MEDVL_MODELS", env["MEDVL_MODELS"])
    (tmp_path / "ws").mkdir()
    cat = scan_workspace(tmp_path / "ws")
    assert cat.model_cards == [card.name]
    space = JointSpace.load(card.name)
    assert space.dim == card.embedding.dim and space.provenance()["model"]["source"].startswith(f"{card.name}@sha256:")


def _quilt_folder(card, folder):
    """An open_clip folder as QuiltNet publishes it: open_clip_config.json (model_cfg) and the whole CLIP state dict
    in open_clip_model.safetensors; returns the source model."""
    import open_clip
    from safetensors.torch import save_file

    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    cfg = {**card.builder.kwargs, "text_cfg": text}
    clip = open_clip.model.CLIP(cfg["embed_dim"], cfg["vision_cfg"], text).eval()
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(folder / card.weights.files[0]))
    (folder / "open_clip_config.json").write_text(__import__("json").dumps({"model_cfg": cfg}))
    return clip


def test_open_clip_card_as_a_zero_shot_model(tmp_path):
    from medvl.models.card_models import card_joint_model

    card, env, _, clip = _install(tmp_path, "quiltnet-b-16", "lab-quilt", _quilt_folder)
    model = card_joint_model(card.name, store=env["MEDVL_MODELS"])
    import open_clip

    images = torch.rand(2, 3, card.tile.input_px, card.tile.input_px, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=77)(["clear cell carcinoma", "normal"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images, normalize=False), clip.encode_image(images))
        torch.testing.assert_close(model.encode_text(["clear cell carcinoma", "normal"], normalize=False),
                                   clip.encode_text(tokens))


# ------------------------------------------------------------------------------------------------ CONCH (CoCa)
def _conch_tokenizer(path):
    """A byte-level BPE tokenizer file built like CONCH's (NFD, strip accents, lower case; ids 0-2 = pad, start,
    end; start and end added around every text), trained on a few captions."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<start_of_text>", "<end_of_text>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["clear cell renal cell carcinoma", "invasive ductal carcinoma of the breast",
                             "normal kidney tissue", "an H&E image of lymphoma"] * 5, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<start_of_text> $A <end_of_text>", special_tokens=[("<start_of_text>", 1), ("<end_of_text>", 2)])
    tok.save(str(path))
    return tok.get_vocab_size()


def _conch_text_reference(state, tokens, heads):
    """CONCH's text forward written out from its description: the class embedding appended after the tokens, a
    causal mask, the class token's row also masking pads (CONCH's mask is shifted one key right: key 0 always
    counts), the class output layer-normalised and projected."""
    width = state["token_embedding.weight"].shape[1]
    b, n = tokens.shape
    x = torch.cat([state["token_embedding.weight"][tokens], state["cls_emb"].expand(b, 1, width)], 1)
    x = x + state["positional_embedding"][: n + 1]
    mask = torch.full((n + 1, n + 1), float("-inf")).triu(1).repeat(b, 1, 1)
    keys = torch.cat([torch.ones(b, 1, dtype=torch.bool), tokens != 0], 1)
    mask[:, -1] = torch.where(keys, 0.0, float("-inf"))
    ln = lambda t, p: torch.nn.functional.layer_norm(t, (width,), state[f"{p}.weight"], state[f"{p}.bias"])  # noqa: E731
    blocks = sorted({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}, key=int)
    for i in blocks:
        p = f"transformer.resblocks.{i}"
        attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attn.load_state_dict({k[len(p) + 6:]: v for k, v in state.items() if k.startswith(f"{p}.attn.")})
        h = ln(x, f"{p}.ln_1")
        x = x + attn(h, h, h, attn_mask=mask.repeat_interleave(heads, 0), need_weights=False)[0]
        h = torch.nn.functional.linear(ln(x, f"{p}.ln_2"), state[f"{p}.mlp.c_fc.weight"], state[f"{p}.mlp.c_fc.bias"])
        x = x + torch.nn.functional.linear(torch.nn.functional.gelu(h), state[f"{p}.mlp.c_proj.weight"],
                                           state[f"{p}.mlp.c_proj.bias"])
    return ln(x[:, -1], "ln_final") @ state["text_projection"]


def _conch_folder(card, folder):
    """CONCH v1's published layout at the reduced size: one pytorch_model.bin holding the whole CoCa model
    (visual.*, text.*, logit_scale) and, beside it, the tokenizer file from CONCH's code; returns (image reference,
    text state, projection)."""
    from open_clip.transformer import TextTransformer

    from tests.models.card_references import coca_reference

    _, image_reference = coca_reference(card, card.builder.kwargs, folder)
    vocab = _conch_tokenizer(folder / "conch_byte_level_bpe_uncased.json")
    weights = folder / card.weights.files[0]
    state = torch.load(weights, weights_only=True)
    dim = card.builder.kwargs["embed_dim"]
    text = TextTransformer(context_length=15, vocab_size=vocab, width=32, heads=2, layers=2, output_dim=dim,
                           embed_cls=True)  # 16 positions with the class slot, as CONCH's 128
    with torch.no_grad():
        for t in text.parameters():
            t.normal_(0, 0.2)
    text_state = {k: v.clone() for k, v in text.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.startswith("text.")}
    state.update({f"text.{k}": v for k, v in text_state.items()})
    torch.save(state, weights)
    return image_reference, text_state, state["visual.proj_contrast"]


def test_conch_card_as_a_zero_shot_model(tmp_path, svs_path):
    """CONCH v1 by name: extract keeps the 512-d (here reduced) unprojected embedding, zero-shot projects it with
    proj_contrast and scores it against the CoCa text tower of the same file, tokenised as CONCH does."""
    from transformers import PreTrainedTokenizerFast

    from medvl.models.card_models import card_joint_model

    card, env, folder, (image_ref, text_state, proj) = _install(tmp_path, "conch-v1", "lab-conch", _conch_folder,
                                                                zero_shot={"heads": 2})
    model = card_joint_model(card.name, store=env["MEDVL_MODELS"])
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "conch_byte_level_bpe_uncased.json"),
                                  bos_token="<start_of_text>", eos_token="<end_of_text>", pad_token="<pad>")
    texts = ["clear cell renal cell carcinoma", "normal kidney tissue"]
    tokens = tok(texts, max_length=15, truncation=True, padding="max_length", return_tensors="pt")["input_ids"]
    assert tokens[0, 0] == 1 and (tokens == 2).sum() == 2 and tokens[1, -1] == 0  # start, end, pads
    images = torch.rand(2, 3, card.tile.input_px, card.tile.input_px, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(texts, normalize=False),
                                   _conch_text_reference(text_state, tokens, heads=2), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.encode_image(images, normalize=False), image_ref(images) @ proj,
                                   rtol=1e-4, atol=1e-5)
    # through the CLI: features keep the unprojected embedding, zero-shot scores them in the joint space
    feats = tmp_path / "feats"
    r = run_cli("slide", "extract", svs_path, "--encoder", card.name, "--out", feats, "--device", "cpu",
                "--mpp", "8", "--json", env=env)
    assert r.returncode == 0, r.stderr
    z = run_cli("zeroshot", next(feats.glob("*.h5")), "--model", card.name, "--classes", ",".join(texts), "--json",
                env=env)
    assert z.returncode == 0, z.stderr
    probs = {t["name"]: t["probability"] for t in z.json()["result"]["top"]}
    assert set(probs) == set(texts) and abs(sum(probs.values()) - 1) < 1e-4


def test_conch_zero_shot_needs_its_tokenizer_file(tmp_path):
    from medvl.errors import InputError
    from medvl.models.card_models import card_joint_model

    def without_tokenizer(card, folder):
        out = _conch_folder(card, folder)
        (folder / "conch_byte_level_bpe_uncased.json").unlink()
        return out

    card, env, *_ = _install(tmp_path, "conch-v1", "lab-conch", without_tokenizer, zero_shot={"heads": 2})
    with pytest.raises(InputError, match="conch_byte_level_bpe_uncased.json beside the weights"):
        card_joint_model(card.name, store=env["MEDVL_MODELS"])
