"""The source libraries' own models, built the way each card says, with random weights written in the published layout.

``REFERENCES[card.name](card, kwargs, folder) -> (weights_path, forward)``: builds the source library's model at the
card's reduced size (``kwargs`` are the reduced builder kwargs merged over the card's), writes its weights into
``folder`` with the published file name, key names and wrapping (including the parts the embedding does not use:
text towers, old-layout buffers), and returns a function computing the embedding the way the source computes it.
Nothing here goes through medvl's builders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

Reference = Callable[[Any, dict, Path], tuple[Path, Callable[[torch.Tensor], torch.Tensor]]]
REFERENCES: dict[str, Reference] = {}


def save(state: dict[str, Any], path: Path) -> Path:
    """Write in the file type the name says: safetensors, else a torch pickle (zip format)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _timm_layers(kw: dict) -> dict:
    import timm.layers

    table = {"SwiGLUPacked": timm.layers.SwiGLUPacked, "SiLU": nn.SiLU}
    return {k: table.get(v, v) if isinstance(v, str) and k in ("mlp_layer", "act_layer") else v for k, v in kw.items()}


def timm_reference(card, kw, folder):
    import timm

    kw = _timm_layers(dict(kw))
    model = timm.create_model(kw.pop("model_name"), pretrained=False, **kw).eval()
    path = save(model.state_dict(), folder / card.weights.files[0])
    if card.embedding.output == "cls+patch_mean":  # Virchow's model card: torch.cat([cls, patch_tokens.mean(1)])
        def forward(x):
            tokens = model.forward_features(x)
            return torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens:].mean(1)], dim=-1)
        return path, forward
    return path, model  # timm's own pooled output (class token with global_pool='token')


def open_clip_reference(card, kw, folder):
    import open_clip

    text = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
    clip = open_clip.model.CLIP(kw["embed_dim"], kw["vision_cfg"], text).eval()
    return save(clip.state_dict(), folder / card.weights.files[0]), clip.encode_image


def biomedclip_reference(card, kw, folder):
    from open_clip.timm_model import TimmModel

    v = kw["vision_cfg"]
    visual = TimmModel(v["timm_model_name"], kw["embed_dim"], image_size=v["image_size"], pool=v["timm_pool"],
                       proj=v["timm_proj"]).eval()
    state = {f"visual.{k}": t for k, t in visual.state_dict().items()}
    state["text.transformer.embeddings.word_embeddings.weight"] = torch.randn(16, 8)  # the HF text tower's keys
    state["logit_scale"] = torch.tensor(4.6)
    return save(state, folder / card.weights.files[0]), visual


def hf_clip_reference(card, kw, folder):
    from transformers import CLIPConfig, CLIPModel

    vision = {k: v for k, v in kw["config"].items() if k != "projection_dim"}
    text = {"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1}
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=kw["config"]["projection_dim"]))
    clip.eval()
    path = save(clip.state_dict(), folder / card.weights.files[0])
    return path, lambda x: clip.visual_projection(clip.vision_model(pixel_values=x).pooler_output)


def hf_reference(card, kw, folder):
    import transformers

    cls = getattr(transformers, kw["class"])
    config = getattr(transformers, cls.config_class.__name__)(**kw["config"])
    model = cls(config, **kw.get("model_kwargs", {})).eval()
    path = save(model.state_dict(), folder / card.weights.files[0])
    if card.remote_code is not None:  # Hibou's cards: the pooler output
        return path, lambda x: model(pixel_values=x).pooler_output
    return path, lambda x: model(pixel_values=x).last_hidden_state[:, 0]


def monai_reference(card, kw, folder):
    from monai.networks import nets

    kw = dict(kw)
    model = getattr(nets, kw.pop("net"))(**kw).eval()
    state = {f"module.backbone.image_encoder.{k}": t for k, t in model.state_dict().items()}
    return save({"model": state, "epoch": 3}, folder / card.weights.files[0]), model


def ctranspath_reference(card, kw, folder):
    """timm's Swin-T with the convolutional stem, written in the timm 0.5.4 layout CTransPath published (patch merging
    at the end of each stage, attention masks as buffers, under 'model'); timm's own converter loads it back."""
    from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn

    from medvl.models.arch import ConvStem

    args = {"depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), **{k: v for k, v in kw.items() if k != "arch"}}
    args = {**args, "depths": tuple(args["depths"]), "num_heads": tuple(args["num_heads"])}
    source = SwinTransformer(embed_layer=ConvStem, num_classes=0, **args).eval()
    old = {}
    for key, value in source.state_dict().items():
        for stage in (1, 2, 3):
            key = key.replace(f"layers.{stage}.downsample.", f"layers.{stage - 1}.downsample.")
        old[key] = value
    for name, buf in source.named_buffers():
        if name.endswith(("attn_mask", "relative_position_index")) and buf is not None:
            old[name] = buf
    path = save({"model": old}, folder / card.weights.files[0])
    reference = SwinTransformer(embed_layer=ConvStem, num_classes=0, **args).eval()
    reference.load_state_dict(checkpoint_filter_fn({"model": old}, reference), strict=True)
    return path, reference


def coca_reference(card, kw, folder):
    """CONCH's image tower from timm's ViT and open_clip's attentional pooler (CONCH's own classes are forks of
    these two)."""
    from open_clip.transformer import AttentionalPooler
    from timm.models.vision_transformer import VisionTransformer

    trunk = VisionTransformer(num_classes=0, dynamic_img_size=True, **kw["trunk"]).eval()
    width = trunk.num_features
    pool = AttentionalPooler(kw["embed_dim"], width, n_head=kw.get("heads", 8), n_queries=1).eval()
    ln = nn.LayerNorm(kw["embed_dim"]).eval()
    with torch.no_grad():
        ln.weight.normal_(), ln.bias.normal_()
    parts = {"trunk": trunk, "attn_pool_contrast": pool, "ln_contrast": ln}
    if kw.get("caption_dim"):
        parts["attn_pool_caption"] = AttentionalPooler(kw["caption_dim"], width, 8, kw["caption_queries"])
        parts["ln_caption"] = nn.LayerNorm(kw["caption_dim"])
    state = {f"{p}.{k}": t for p, m in parts.items() for k, t in m.state_dict().items()}
    if kw.get("projection"):
        state["proj_contrast"] = torch.randn(kw["embed_dim"], kw["embed_dim"])
    if card.weights.select_prefix:  # CONCH v1's file: the whole CoCa model (text tower too)
        state = {f"{card.weights.select_prefix}{k}": t for k, t in state.items()}
        state["text.token_embedding.weight"], state["logit_scale"] = torch.randn(32, 16), torch.tensor(2.0)
    path = save(state, folder / card.weights.files[0])
    return path, lambda x: ln(pool(trunk.forward_features(x))[:, 0])


def keep_reference(card, kw, folder):
    import timm

    visual = timm.create_model(kw["model_name"], pretrained=False, num_classes=0, **kw["trunk"]).eval()
    dim = kw["projection_dim"]
    head = nn.Sequential(nn.Linear(visual.num_features, dim), nn.GELU(), nn.Linear(dim, dim)).eval()
    state = {**{f"visual.{k}": t for k, t in visual.state_dict().items()},
             **{f"visual_head.{k}": t for k, t in head.state_dict().items()},
             "text.embeddings.word_embeddings.weight": torch.randn(16, 8), "logit_scale": torch.tensor(3.2)}
    path = save(state, folder / card.weights.files[0])
    return path, lambda x: torch.nn.functional.normalize(head(visual(x)), dim=-1)


BY_BUILDER = {"timm": timm_reference, "open_clip": open_clip_reference, "hf": hf_reference, "monai": monai_reference}
BY_CARD = {"biomedclip": biomedclip_reference, "plip": hf_clip_reference, "ctranspath": ctranspath_reference,
           "conch-v1": coca_reference, "conch-v1.5": coca_reference, "keep": keep_reference}


def reference_for(card) -> Reference:
    return BY_CARD.get(card.name) or BY_BUILDER[card.builder.name]


def reduced_card_dict(card) -> dict[str, Any]:
    """The card as a user card of its reduced variant (same key layout, smaller)."""
    data = card.to_dict()
    data["name"] = f"{card.name}-reduced"
    data["builder"]["kwargs"] = {**card.builder.kwargs, **card.reduced.kwargs}
    data["embedding"]["dim"] = card.reduced.dim or card.embedding.dim
    data["params"] = {"counted": None}
    if card.tile is not None and card.reduced.input_px:
        data["tile"].update(input_px=card.reduced.input_px, tile_px=card.reduced.input_px, resize_px=None)
    return data


def user_card(tmp_path: Path, base: str = "uni", name: str = "lab-uni", **tile: Any) -> tuple[Any, Path, Callable]:
    """A user card folder holding the reduced variant of ``base`` (tile fields overridable) and its weights, written in
    the published layout: returns (card, weights folder, reference forward)."""
    from medvl.models.card import ModelCard
    from medvl.models.catalogue import get_card

    data = reduced_card_dict(get_card(base))
    data["name"] = name
    data["tile"].update(tile)
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    (cards / f"{name}.json").write_text(__import__("json").dumps(data))
    card = ModelCard.from_dict(data)
    weights = tmp_path / f"{name}-weights"
    weights.mkdir()
    torch.manual_seed(0)
    _, forward = reference_for(card)(card, card.builder.kwargs, weights)
    return card, weights, forward
