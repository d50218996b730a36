"""Vision-language models by card name: a card's image encoder joined with the text tower its weights folder holds.

``medvl zeroshot --model CARD`` and ``medvl index build --model CARD`` go through :func:`card_joint_model`. The image
side is the card's own encoder (:func:`medvl.models.published.load_card_encoder`: the same weights, preprocessing and
output as ``medvl slide extract --encoder CARD``), and the model's identity is the card's weights label, so features
extracted with the card are accepted and features of any other encoder are refused.

The text side is named by the card (``zero_shot.text_builder``) and built from the published files of the same
folder by an entry of :data:`TEXT_BUILDERS`. A card without one (its text tower is not in medvl, or its embedding is
not in the image-text space) cannot serve as a zero-shot model: :func:`card_joint_model` says so and why. Where the
embedding needs a projection into the joint space (CONCH's ``proj_contrast``), the card names the encoder's
parameter, which becomes the model's image projection: features keep the card's embedding and are projected when
scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medvl.errors import ConfigError, InputError
from medvl.models.card import ModelCard
from medvl.models.tower import Tower
from medvl.registry import Registry

__all__ = ["TEXT_BUILDERS", "CocaTextTower", "card_joint_model", "zero_shot_problem"]

#: ``text_builder`` name -> ``(card, weights folder) -> text tower`` (its ``embed_dim`` is the joint width)
TEXT_BUILDERS: Registry[Callable[[ModelCard, Path], Any]] = Registry("card text tower")


@TEXT_BUILDERS.register("hf-clip-text")
def _hf_clip_text(card: ModelCard, folder: Path) -> Any:
    """The text side of a Hugging Face ``CLIPModel`` folder (``config.json``, weights, tokenizer files)."""
    from medvl.models.pretrained import hf_clip_text

    if not (folder / "config.json").is_file():
        raise InputError(folder, f"card '{card.name}': the text tower needs the folder's config.json (a Hugging "
                                 "Face CLIPModel folder)")
    return hf_clip_text(path=str(folder))


@TEXT_BUILDERS.register("open-clip-text")
def _open_clip_text(card: ModelCard, folder: Path) -> Any:
    """The text side of an open_clip folder (``open_clip_config.json`` with ``model_cfg``, and the state dict)."""
    from medvl.models.card_weights import find_weight_file
    from medvl.models.pretrained import open_clip_text

    config = folder / "open_clip_config.json"
    if not config.is_file():
        raise InputError(folder, f"card '{card.name}': the text tower needs the folder's open_clip_config.json")
    model_cfg = json.loads(config.read_text())
    return open_clip_text(model_cfg.get("model_cfg", model_cfg), str(find_weight_file(card, folder)))


class CocaTextTower(Tower):
    """The text side of a CoCa model as CONCH publishes it (Lu et al., Nature Medicine 2024; Yu et al., CoCa 2022).

    A causal text transformer with a learned class embedding appended after the tokens; the class token attends to
    every non-pad token, and its output, layer-normalised and projected (``text_projection``), is the text embedding.
    The transformer is open_clip's ``TextTransformer`` (the CoCa class-token variant), built at the sizes of the
    weights. Texts are tokenised with the model's byte-level BPE tokenizer (start and end tokens added) and padded to
    ``context_length - 1`` positions, the last one being the class token's.
    """

    modality = "text"

    def __init__(self, state: dict[str, Any], tokenizer: Any, heads: int, pad_id: int = 0):
        super().__init__()
        from open_clip.transformer import TextTransformer

        vocab, width = state["token_embedding.weight"].shape
        positions = int(state["positional_embedding"].shape[0])
        layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
        self.embed_dim = int(state["text_projection"].shape[1])
        if width % heads:
            raise ConfigError(f"coca text tower: width {width} is not divisible by {heads} heads")
        # open_clip counts the class position on top of context_length; CONCH's positions include it
        self.model = TextTransformer(context_length=positions - 1, vocab_size=int(vocab), width=int(width),
                                     heads=heads, layers=layers, output_dim=self.embed_dim, embed_cls=True,
                                     pad_id=pad_id, correct_cls_mask=False)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise ConfigError(f"coca text tower: weights do not fit (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
        self.tokenizer, self.max_length = tokenizer, positions - 1
        self.random_weights = False

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(list(texts), max_length=self.max_length, truncation=True, padding="max_length",
                             add_special_tokens=True, return_token_type_ids=False, return_tensors="pt")
        return ids["input_ids"]

    def encode(self, batch: Any) -> torch.Tensor:
        tokens = batch if isinstance(batch, torch.Tensor) else self.tokenize(list(batch))
        return self.model(tokens.to(self.model.token_embedding.weight.device))


@TEXT_BUILDERS.register("coca-text")
def _coca_text(card: ModelCard, folder: Path) -> Any:
    """CONCH's text side: the ``text.`` tensors of the card's weight file and the tokenizer file beside it."""
    from transformers import PreTrainedTokenizerFast

    from medvl.models.card_weights import find_weight_file, read_state

    opts = card.zero_shot.text_options
    name = opts.get("tokenizer_file", "tokenizer.json")
    path = folder / name
    if not path.is_file():
        raise InputError(folder, f"card '{card.name}': the text tower needs the tokenizer file {name} beside the "
                                 f"weights ({opts.get('tokenizer_source', 'published with the model')})")
    specials = opts.get("special_tokens", {})
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), **specials)
    if tokenizer.pad_token_id is None:
        raise InputError(path, f"card '{card.name}': the tokenizer has no pad token")
    prefix = opts.get("prefix", "text.")
    state = read_state(card, find_weight_file(card, folder), part=prefix)
    if "token_embedding.weight" not in state:
        raise InputError(folder, f"card '{card.name}': the weight file holds no text tower (no "
                                 f"'{prefix}token_embedding.weight')")
    if len(tokenizer) > state["token_embedding.weight"].shape[0]:
        raise InputError(path, f"card '{card.name}': the tokenizer has {len(tokenizer)} tokens, the text tower "
                               f"{state['token_embedding.weight'].shape[0]}")
    return CocaTextTower(state, tokenizer, int(opts.get("heads", 8)), int(tokenizer.pad_token_id))


def _joint_projection(card: ModelCard, image: Any) -> torch.Tensor | None:
    """The ``[dim, out]`` matrix that maps the card's embedding into the joint space (``zero_shot.projection``),
    or ``None`` when the embedding is already there."""
    if card.zero_shot.joint_space:
        return None
    params = dict(image.backbone.module.named_parameters())
    name = str(card.zero_shot.projection)
    if name not in params or params[name].ndim != 2 or params[name].shape[0] != image.embed_dim:
        raise ConfigError(f"card '{card.name}': zero_shot.projection '{name}' is not a [{image.embed_dim}, out] "
                          "parameter of the encoder")
    return params[name].detach()


def zero_shot_problem(card: ModelCard) -> str | None:
    """Why ``card`` cannot serve as a zero-shot model (``None``: it can)."""
    spec = card.zero_shot
    if card.modality == "slide":
        return "it is a slide encoder (zero-shot scores tiles or images against text)"
    if not spec.joint_space and spec.text_builder is None:
        return (f"its embedding is not in an image-text space (the projection '{spec.projection}' is not part of "
                f"medvl's build of it); text tower: {spec.text_tower or 'none'}")
    if spec.text_builder is None:
        return f"medvl cannot build its text tower ({spec.text_tower or 'none published'})"
    return None


def card_joint_model(card: ModelCard | str, weights: str | Path | None = None, *, store: str | Path | None = None,
                     trust_pickle: bool = False, trust_remote_code: bool = False) -> Any:
    """A :class:`~medvl.models.MultiModalModel` (``image`` + ``text``) from a vision-language card and its weights.

    Args:
        card: a card or its name (built-in, ``MEDVL_CARDS``, or installed in the store).
        weights: the weights folder; ``None`` uses the model installed in the local store.
        store: the model store folder (default: ``MEDVL_MODELS``, else the workspace's).
        trust_pickle: accept weight files that need full unpickling.
        trust_remote_code: allow hub code to run (cards that need it).

    Raises:
        ConfigError: the card cannot serve as a zero-shot model (the message says why).
        InputError: the weights are not installed or do not match the card.
    """
    from medvl.hashing import config_hash
    from medvl.models.catalogue import resolve_card
    from medvl.models.multimodal import ModelConfig, MultiModalModel, TowerSpec
    from medvl.models.published import card_weights_label, load_card_encoder, weights_folder

    card = resolve_card(card, store=store)
    problem = zero_shot_problem(card)
    if problem is not None:
        raise ConfigError(f"model card '{card.name}' cannot serve as a zero-shot model: {problem}")
    image = load_card_encoder(card, weights, store=store, trust_pickle=trust_pickle,
                              trust_remote_code=trust_remote_code)
    folder = weights_folder(card, weights, store)
    text = TEXT_BUILDERS.get(str(card.zero_shot.text_builder))(card, folder if folder.is_dir() else folder.parent)
    projection = _joint_projection(card, image)
    joint = image.embed_dim if projection is None else int(projection.shape[1])
    if int(text.embed_dim) != joint:
        raise InputError(folder, f"card '{card.name}': the text tower gives {text.embed_dim}-d vectors, the image "
                                 f"side {joint}-d")
    config = ModelConfig(towers={"image": TowerSpec(f"card:{card.name}",
                                                    projection="none" if projection is None else "linear"),
                                 "text": TowerSpec(str(card.zero_shot.text_builder), projection="none")},
                         embed_dim=joint)
    model = MultiModalModel(config, towers={"image": image, "text": text}).eval()
    if projection is not None:  # features stay the card's embedding; the projection is applied when scoring
        with torch.no_grad():
            model.projections["image"].weight.copy_(projection.T)
    label = card_weights_label(card, weights, store)  # what `slide extract --encoder CARD` records
    model.identity = {"source": card.name, "name": label, "weights": label, "config": config_hash(card.to_dict())}
    return model
