"""Masking for masked language modelling: whole-word, span (SpanBERT) and concept-span masking.

A text's masking depends only on the run's seed, the optimizer step and the text itself (a generator per text), so
it is the same for any number of processes and after a resume. ``concept`` masking takes whole concept mentions
found by the knowledge tagger (or the concept tokens of a concept-aware tokenizer) first, then whole words up to the
budget. The chosen tokens become ``[MASK]`` (``mask_fraction``), a random token (``random_fraction``) or stay.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError

__all__ = ["MaskedBatch", "Masker", "MaskingConfig", "hf_tokenizer", "text_seed"]

IGNORE = -100


@dataclass
class MaskingConfig(Config):
    """How tokens are chosen and replaced.

    Attributes:
        strategy: ``token`` (independent tokens), ``whole-word``, ``span`` (contiguous words, geometric lengths) or
            ``concept`` (whole tagged concept mentions first, then whole words).
        probability: share of a text's tokens that are predicted.
        mask_fraction, random_fraction: of the chosen tokens, the share set to ``[MASK]`` and to a random token
            (the rest keep their token).
        span_p, max_span: span masking: span lengths in words ~ Geometric(span_p), at most ``max_span``.
        concept_sources: graph sources of the concept tagger for ``concept`` masking (default: the bundled ones);
            not needed when the tower's tokenizer is concept-aware (its tagger is used).
        concept_source: tag the concepts of this source (``DOID``); empty: every concept of the graph.
    """

    strategy: Literal["token", "whole-word", "span", "concept"] = "whole-word"
    probability: float = 0.15
    mask_fraction: float = 0.8
    random_fraction: float = 0.1
    span_p: float = 0.2
    max_span: int = 10
    concept_sources: list[str] | None = None
    concept_source: str = ""

    def validate(self) -> None:
        if not 0 < self.probability < 1:
            raise ConfigError("MaskingConfig.probability: must be within (0, 1)")
        if self.mask_fraction < 0 or self.random_fraction < 0 or self.mask_fraction + self.random_fraction > 1:
            raise ConfigError("MaskingConfig: mask_fraction + random_fraction must be within [0, 1]")
        if not 0 < self.span_p <= 1 or self.max_span < 1:
            raise ConfigError("MaskingConfig: span_p must be within (0, 1] and max_span positive")


@dataclass
class MaskedBatch:
    """Token inputs with the chosen positions replaced, and ``labels`` (the original ids there, -100 elsewhere)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    original: torch.Tensor


def hf_tokenizer(tokenizer: Any) -> tuple[Any, Any, set[int]]:
    """The Hugging Face tokenizer inside ``tokenizer``, its text rewrite (concept tokens) and its concept-token ids."""
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(tokenizer, "rewrite"):
        return inner, tokenizer.rewrite, set(tokenizer.token_ids.values())
    return tokenizer, (lambda text: text), set()


def text_seed(seed: int, step: int, text: str) -> int:
    return (seed * 1_000_003 + step * 7919 + zlib.crc32(text.encode("utf-8"))) % (2**63)


class Masker:
    """Chooses and replaces tokens of tokenized texts (see the module docstring).

    Args:
        config: the masking options.
        tokenizer: the tower's tokenizer (a Hugging Face fast tokenizer, or a concept tokenizer around one).
        max_length: tokens kept per text.
        tagger: the concept tagger of ``concept`` masking (``None`` uses the tokenizer's concept tokens only).
    """

    def __init__(self, config: MaskingConfig, tokenizer: Any, max_length: int, tagger: Any = None):
        self.config = config
        self.tokenizer, self.rewrite, self.concept_ids = hf_tokenizer(tokenizer)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError("masking needs a fast (Rust) Hugging Face tokenizer (word ids and offsets)")
        if self.tokenizer.mask_token_id is None:
            raise ConfigError("masking needs a tokenizer with a [MASK] token")
        self.max_length = max_length
        self.tagger = tagger
        special = set(self.tokenizer.all_special_ids)
        self.random_ids = torch.tensor([i for i in range(len(self.tokenizer)) if i not in special])

    def tokenize(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], Any, list[str]]:
        rewritten = [self.rewrite(t) for t in texts]
        enc = self.tokenizer(rewritten, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_offsets_mapping=True)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        return inputs, enc, rewritten

    def _units(self, enc: Any, row: int, text: str, ids: torch.Tensor) -> tuple[list[list[int]], list[list[int]]]:
        """(concept units, word units): token positions of each concept mention and of each other word."""
        words: dict[int, list[int]] = {}
        for pos, word in enumerate(enc.word_ids(row)):
            if word is not None:
                words.setdefault(word, []).append(pos)
        if self.config.strategy == "token":
            return [], [[p] for ps in words.values() for p in ps]
        concepts: list[list[int]] = []
        if self.config.strategy == "concept":
            offsets = enc["offset_mapping"][row].tolist()
            taken: set[int] = set()
            spans = [(m.start, m.end) for m in self.tagger.find(text)] if self.tagger is not None else []
            for start, end in spans:
                unit = [p for ps in words.values() for p in ps if offsets[p][0] < end and offsets[p][1] > start]
                if unit and not taken & set(unit):
                    concepts.append(unit)
                    taken.update(unit)
            concepts += [[p] for ps in words.values() for p in ps if int(ids[p]) in self.concept_ids
                         and p not in taken]
            taken.update(p for u in concepts for p in u)
            return concepts, [ps for ps in words.values() if not taken & set(ps)]
        return [], list(words.values())

    def _choose(self, concepts: list[list[int]], words: list[list[int]], n_tokens: int,
                rng: np.random.Generator) -> list[int]:
        budget = max(1, round(self.config.probability * n_tokens))
        chosen: list[int] = []
        if self.config.strategy == "span":
            order = list(range(len(words)))
            while len(chosen) < budget and order:
                length = min(int(rng.geometric(self.config.span_p)), self.config.max_span)
                start = order[int(rng.integers(len(order)))]
                for w in range(start, min(start + length, len(words))):
                    if w in order and len(chosen) < budget:
                        chosen += words[w]
                        order.remove(w)
            return chosen
        units = [concepts[i] for i in rng.permutation(len(concepts))] + [words[i] for i in rng.permutation(len(words))]
        for unit in units:
            if len(chosen) >= budget:
                break
            if len(chosen) + len(unit) <= budget or not chosen:  # a unit is masked whole, never in part
                chosen += unit
        return chosen

    def __call__(self, texts: list[str], seed: int, step: int) -> MaskedBatch:
        inputs, enc, rewritten = self.tokenize(texts)
        ids = inputs["input_ids"]
        labels = torch.full_like(ids, IGNORE)
        masked = ids.clone()
        cfg = self.config
        for row, text in enumerate(rewritten):
            rng = np.random.default_rng(text_seed(seed, step, texts[row]))
            concepts, words = self._units(enc, row, text, ids[row])
            n_tokens = sum(len(u) for u in concepts) + sum(len(u) for u in words)
            if not n_tokens:
                continue
            positions = torch.tensor(sorted(self._choose(concepts, words, n_tokens, rng)), dtype=torch.long)
            labels[row, positions] = ids[row, positions]
            draw = rng.random(len(positions))
            to_mask = positions[torch.from_numpy(draw < cfg.mask_fraction)]
            to_random = positions[torch.from_numpy((draw >= cfg.mask_fraction)
                                                   & (draw < cfg.mask_fraction + cfg.random_fraction))]
            masked[row, to_mask] = self.tokenizer.mask_token_id
            if len(to_random):
                pick = torch.from_numpy(rng.integers(len(self.random_ids), size=len(to_random)))
                masked[row, to_random] = self.random_ids[pick]
        return MaskedBatch({**inputs, "input_ids": masked}, labels, ids)
