"""Pretrained formats: tiny models saved in each format load with the same embeddings as the source."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from medvl.models import ModelConfig, TowerSpec, create_model


def test_hf_encoder_folder(tmp_path):
    from transformers import BertConfig, BertModel

    from medvl.models.text import tiny_tokenizer

    tok = tiny_tokenizer()
    src = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64), add_pooling_layer=False).eval()
    src.save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    model = create_model(ModelConfig(towers={"text": TowerSpec("hf-text", {"path": str(tmp_path / "bert")},
                                                                 projection="none")}, embed_dim=32)).eval()
    texts = ["breast cancer", "a benign cyst of the kidney"]
    enc = tok(texts, padding=True, return_tensors="pt")
    hidden = src(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(model.encode_text(texts), expected)


def test_offline_minilm_default_matches_sentence_transformers_pooling():
    from transformers import AutoModel, AutoTokenizer

    from medvl.models.text import default_text_encoder_path

    path = default_text_encoder_path()
    tower = create_model(ModelConfig(towers={"text": TowerSpec("hf-text", projection="none")}, embed_dim=384))
    tower.eval()
    tok, ref = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(["clear cell renal cell carcinoma"], return_tensors="pt")
    expected = F.normalize(ref(**enc).last_hidden_state.mean(1), dim=-1)
    torch.testing.assert_close(tower.encode_text(["clear cell renal cell carcinoma"]), expected, atol=1e-5, rtol=1e-4)


def test_hf_clip_folder(tmp_path):
    from transformers import CLIPModel

    from medvl.models.pretrained import from_hf_clip, tiny_hf_clip_config
    from medvl.models.text import tiny_tokenizer

    torch.manual_seed(0)
    src = CLIPModel(tiny_hf_clip_config()).eval()
    src.save_pretrained(tmp_path / "clip")
    tok = tiny_tokenizer()
    tok.save_pretrained(tmp_path / "clip")
    model = from_hf_clip(tmp_path / "clip").eval()
    images = torch.rand(2, 3, 32, 32)
    texts = ["breast cancer", "normal"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img_ref = src.vision_model(pixel_values=images).pooler_output
        img_ref = F.normalize(src.visual_projection(img_ref), dim=-1)
        txt_ref = src.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
        txt_ref = F.normalize(src.text_projection(txt_ref), dim=-1)
        torch.testing.assert_close(model.encode_image(images), img_ref)
        torch.testing.assert_close(model.encode_text(texts), txt_ref)
    # and it survives a medvl checkpoint
    restored = create_model(model.save(tmp_path / "ckpt")).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.encode_text(texts), txt_ref)


def test_open_clip_state_dict_and_config(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from medvl.models.pretrained import TINY_OPEN_CLIP, from_open_clip

    torch.manual_seed(0)
    src = open_clip.model.CLIP(**TINY_OPEN_CLIP).eval()
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP}))
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, str(tmp_path / "weights.safetensors"))
    model = from_open_clip(tmp_path / "open_clip_config.json", tmp_path / "weights.safetensors").eval()
    images = torch.rand(2, 3, 32, 32)
    texts = ["breast cancer", "normal tissue"]
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=16)(texts)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), F.normalize(src.encode_image(images), dim=-1))
        torch.testing.assert_close(model.encode_text(texts), F.normalize(src.encode_text(tokens), dim=-1))
    assert model.scale().item() == torch.tensor(src.logit_scale.exp().item()).item()


def test_timm_state_dict(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = timm.create_model("test_vit", num_classes=0).eval()
    save_file(src.state_dict(), str(tmp_path / "uni.safetensors"))
    model = create_model(ModelConfig(towers={"image": TowerSpec(
        "timm", {"model_name": "test_vit", "weights": str(tmp_path / "uni.safetensors")})}, embed_dim=8)).eval()
    images = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(model.towers["image"].encode(images), src(images))
