"""``mlm``: masked language modelling on the text tower (BioBERT-style continued pre-training).

Options (``objective_options``) are a :class:`~medvl.train.text.masking.MaskingConfig`: whole-word (default), span
or concept-span masking. The head (dense, GELU, LayerNorm, decoder tied to the input embeddings) is the stage's
``head``, saved in the trainer state; the loss is the cross-entropy over the chosen tokens, a mean over every process.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medvl.errors import ConfigError
from medvl.train.config import StageConfig
from medvl.train.objectives import register_objective
from medvl.train.text.common import LMHead, TextObjective, concept_tagger, global_mean
from medvl.train.text.masking import IGNORE, Masker, MaskingConfig

__all__ = ["MLMObjective"]


def build_masker(stage: StageConfig, tower: Any, options: dict[str, Any]) -> Masker:
    try:
        cfg = MaskingConfig.from_dict(options)
    except ConfigError as exc:
        raise ConfigError(f"stage '{stage.name}' objective_options: {exc}") from None
    tagger = concept_tagger(tower.tokenizer, cfg.concept_sources, cfg.concept_source) \
        if cfg.strategy == "concept" else None
    return Masker(cfg, tower.tokenizer, tower.max_length, tagger)


@register_objective("mlm")
class MLMObjective(TextObjective):
    """Masked language modelling (see the module docstring)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        self.masker = build_masker(stage, self.tower, stage.objective_options)
        config = self.tower.model.config
        with torch.random.fork_rng(devices=[]):  # the head's init must not move the run's RNG stream
            torch.manual_seed(seed)
            self.head = LMHead(self.tower.embed_dim, self.vocab, getattr(config, "layer_norm_eps", 1e-12))

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        masked = self.masker(batch[self.field], self.seed, self.step)
        hidden = self.hidden(masked.inputs)
        labels = masked.labels.to(hidden.device)
        chosen = labels != IGNORE
        with torch.autocast(hidden.device.type, enabled=False):
            logits = self.head(hidden[chosen].float(), self.embeddings().float())
            total = F.cross_entropy(logits, labels[chosen], reduction="sum")
            loss = global_mean(total, chosen.sum())
        acc = (logits.argmax(-1) == labels[chosen]).float().mean() if chosen.any() else torch.zeros(())
        return loss, {"loss_mlm": float(loss.detach()), "mlm_acc": float(acc), "masked": int(chosen.sum())}
