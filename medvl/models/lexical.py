"""Lexicon-bottleneck head (LexLIP): a text maps to sparse, non-negative weights over the tokenizer's vocabulary.

Each token's contextual state from a text tower goes through a small transform (initialised as the identity) and is
decoded against the tower's own input word embeddings (tied, as BERT's masked-language-model head is), plus a
per-term bias; a term's weight is ``log(1 + relu(max over tokens of its logit))`` (SPLADE/LexLIP saturation), special
tokens get none, and only the ``top_k`` largest weights of a text are kept. The result is searched with an inverted
index (:mod:`medvl.tasks.retrieval.sparse`) and says which words matched. Untrained, the tied head already weights a
text's own words and close variants ("heart" -> "hearts", "cardiac"); contrastive training sharpens it.

A saved encoder is a folder (``lexical.json``, ``head.safetensors``, ``vocab.txt``) that records the fingerprints of
its vocabulary and of the text tower's weights, so it is never silently applied over another tokenizer or tower.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.hashing import bytes_hash, config_hash

__all__ = ["LEXICAL_FORMAT", "LexicalConfig", "LexicalEncoder", "LexiconHead", "is_lexical_encoder"]

LEXICAL_FORMAT = "medvl-lexical"
_CONFIG, _HEAD, _VOCAB = "lexical.json", "head.safetensors", "vocab.txt"


@dataclass
class LexicalConfig(Config):
    """A lexical encoder.

    Attributes:
        text_tower: registered text tower whose tokens and vocabulary the head uses (``hf-text``: offline MiniLM).
        text_options: options of that tower (e.g. ``max_length``).
        top_k: weights kept per text (0: every non-zero weight).
    """

    text_tower: str = "hf-text"
    text_options: dict[str, Any] = field(default_factory=lambda: {"max_length": 128})
    top_k: int = 128

    def validate(self) -> None:
        if self.top_k < 0:
            raise ConfigError("LexicalConfig.top_k: must be >= 0")


class LexiconHead(nn.Module):
    """Token states ``[B, T, D]`` -> vocabulary weights ``[B, V]`` through tied word embeddings."""

    def __init__(self, hidden: int, vocab_size: int, special_ids: list[int]):
        super().__init__()
        self.transform = nn.Linear(hidden, hidden)
        with torch.no_grad():
            self.transform.weight.copy_(torch.eye(hidden))
            self.transform.bias.zero_()
        self.norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[torch.as_tensor(special_ids, dtype=torch.long)] = True
        self.register_buffer("special", special, persistent=False)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, embeddings: torch.Tensor,
                chunk: int = 512) -> torch.Tensor:
        mask = mask.bool()
        flat = hidden[mask]  # the real tokens of every text, [M, D]
        owner = torch.arange(hidden.shape[0], device=hidden.device).repeat_interleave(mask.sum(1))
        best = torch.full((hidden.shape[0], embeddings.shape[0]), float("-inf"), device=hidden.device,
                          dtype=torch.float32)
        for start in range(0, flat.shape[0], chunk):  # [chunk, V] logits at a time, never [B, T, V]
            logits = (self.norm(self.transform(flat[start:start + chunk])) @ embeddings.T + self.bias).float()
            index = owner[start:start + chunk, None].expand_as(logits)
            best = best.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
        weights = torch.log1p(torch.relu(best.nan_to_num(neginf=0.0)))
        return weights.masked_fill(self.special, 0.0)


def _top_k(weights: torch.Tensor, k: int) -> torch.Tensor:
    if not k or k >= weights.shape[1]:
        return weights
    top = weights.topk(k, dim=1)
    return torch.zeros_like(weights).scatter_(1, top.indices, top.values)


def _state_fingerprint(module: nn.Module) -> str:
    parts = [f"{k}:{tuple(v.shape)}".encode() + v.detach().cpu().contiguous().numpy().tobytes()
             for k, v in sorted(module.state_dict().items())]
    return bytes_hash(b"".join(parts))


class LexicalEncoder(nn.Module):
    """A text tower and a :class:`LexiconHead`; ``encode_sparse`` gives a ``scipy.sparse`` matrix ``[N, V]``."""

    def __init__(self, config: LexicalConfig | None = None, tower: nn.Module | None = None):
        super().__init__()
        from medvl.models.registry import create_tower

        self.config = config or LexicalConfig()
        self.tower = tower if tower is not None else create_tower(self.config.text_tower, **self.config.text_options)
        tok = self.tower.tokenizer
        self.vocabulary = tok.convert_ids_to_tokens(list(range(len(tok))))
        self.vocab_fingerprint = bytes_hash("\n".join(self.vocabulary).encode())
        embeddings = self.tower.model.get_input_embeddings().weight
        if embeddings.shape[0] < len(self.vocabulary):
            raise ConfigError(f"text tower '{self.config.text_tower}': fewer word embeddings than vocabulary entries")
        self.head = LexiconHead(embeddings.shape[1], len(self.vocabulary), list(tok.all_special_ids))
        self.base_fingerprint = _state_fingerprint(self.tower)

    @property
    def fingerprint(self) -> str:
        """Identity of what the weights mean: config, vocabulary, tower weights and head weights."""
        return config_hash({"config": self.config.to_dict(), "vocab": self.vocab_fingerprint,
                            "base": self.base_fingerprint, "head": _state_fingerprint(self.head)})

    def encode_dense(self, texts: list[str]) -> torch.Tensor:
        """``[B, V]`` non-negative weights (no top-k; differentiable for training the head)."""
        hidden, mask = self.tower.encode_tokens_masked(list(texts))
        embeddings = self.tower.model.get_input_embeddings().weight[: len(self.vocabulary)]
        return self.head(hidden, mask, embeddings)

    @torch.inference_mode()
    def encode_sparse(self, texts: list[str], batch_size: int = 32):
        """``scipy.sparse.csr_matrix [N, V]`` of each text's ``top_k`` weights (float32)."""
        from scipy import sparse

        was = self.training
        self.eval()
        blocks = []
        for start in range(0, len(texts), batch_size):
            w = _top_k(self.encode_dense(texts[start:start + batch_size]).float(), self.config.top_k)
            blocks.append(sparse.csr_matrix(w.cpu().numpy()))
        self.train(was)
        if not blocks:
            return sparse.csr_matrix((0, len(self.vocabulary)), dtype=np.float32)
        return sparse.vstack(blocks).tocsr().astype(np.float32)

    def terms(self, ids: np.ndarray) -> list[str]:
        return [self.vocabulary[int(i)] for i in ids]

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write the head, config and fingerprints into ``folder`` (atomically)."""
        from safetensors.torch import save_file

        from medvl import __version__
        from medvl.atomic import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp / _HEAD))
            (tmp / _VOCAB).write_text("\n".join(self.vocabulary) + "\n", encoding="utf-8")
            record = {"format": LEXICAL_FORMAT, "config": self.config.to_dict(), "vocab_fingerprint":
                      self.vocab_fingerprint, "base_fingerprint": self.base_fingerprint,
                      "fingerprint": self.fingerprint, "medvl_version": __version__}
            (tmp / _CONFIG).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LexicalEncoder:
        """Rebuild a saved encoder; refuse it when its tower now has another vocabulary or other weights."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not is_lexical_encoder(folder):
            raise InputError(folder, f"not a lexical encoder folder (expected {_CONFIG} with format "
                                     f"'{LEXICAL_FORMAT}' and {_HEAD})")
        record = json.loads((folder / _CONFIG).read_text(encoding="utf-8"))
        enc = cls(LexicalConfig.from_dict(record["config"]))
        if enc.vocab_fingerprint != record["vocab_fingerprint"]:
            raise InputError(folder, "the text tower's vocabulary differs from the one this head was trained on")
        if enc.base_fingerprint != record["base_fingerprint"]:
            raise InputError(folder, "the text tower's weights differ from the ones this head was trained on")
        enc.head.load_state_dict(load_file(str(folder / _HEAD)))
        return enc.eval()


def is_lexical_encoder(folder: str | Path) -> bool:
    folder = Path(folder)
    if not (folder / _CONFIG).is_file() or not (folder / _HEAD).is_file():
        return False
    try:
        return json.loads((folder / _CONFIG).read_text(encoding="utf-8")).get("format") == LEXICAL_FORMAT
    except (OSError, ValueError):
        return False
