"""Training the LexLIP lexicon head: ``objective: lexical`` on ``dataset: text-pairs``
(:mod:`medvl.train.data.text_pairs`).

The model's text tower stays frozen; the objective's head (:class:`medvl.models.lexical.LexiconHead`, tied to the
tower's word embeddings) learns to weight vocabulary terms so that a query's sparse weights score its paired
document above the other documents of the batch: a symmetric InfoNCE over the dot products of the (dense, not yet
top-k) weight vectors, plus the FLOPS regulariser of SPLADE (``flops`` x the squared mean weight of every term, summed),
which keeps the vectors sparse and the posting lists short. At the end of the stage the head is exported as a
lexical encoder folder, ``<run>/objectives/<stage>/`` (``medvl index build --kind sparse --lexical DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.train.config import StageConfig
from medvl.train.objectives import Objective, register_objective

__all__ = ["LexicalObjective", "LexicalOptions"]


@dataclass
class LexicalOptions(Config):
    """Options of the ``lexical`` objective: ``top_k`` of the exported encoder, the FLOPS weight, the logit scale."""

    top_k: int = 128
    flops: float = 1e-3
    scale: float = 1.0

    def validate(self) -> None:
        if self.top_k < 0 or self.flops < 0 or self.scale <= 0:
            raise ConfigError("LexicalOptions: top_k and flops must be >= 0, scale > 0")


def _flops(weights: torch.Tensor) -> torch.Tensor:
    return weights.mean(0).pow(2).sum()


@register_objective("lexical")
class LexicalObjective(Objective):
    """Contrastive training of the lexicon head over a frozen text tower (see the module docstring)."""

    n_inputs = 2

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        from medvl.models.lexical import LexicalConfig, LexicalEncoder

        if len(stage.inputs) != 2:
            raise ConfigError(f"stage '{stage.name}': the lexical objective takes two text inputs (query, document)")
        fields = getattr(dataset, "fields", {})
        if any(fields.get(f) != "text" for f in stage.inputs) or "text" not in model.towers:
            raise ConfigError("objective 'lexical': both inputs must be text fields and the model needs a text tower")
        super().__init__(model, stage, dataset, seed)
        self.q, self.d = stage.inputs
        self.opts = LexicalOptions.from_dict(stage.objective_options)
        spec = model.config.towers["text"]
        lexical = LexicalEncoder(LexicalConfig(text_tower=spec.name, text_options=dict(spec.options),
                                               top_k=self.opts.top_k), tower=model.towers["text"])
        self.head = lexical.head  # registered first: its parameters are named head.* (what the stage trains)
        self.lexical = lexical

    def used_prefixes(self) -> list[str]:
        return ["head."]

    def train(self, mode: bool = True) -> LexicalObjective:
        super().train(mode)
        self.model.towers["text"].eval()  # frozen: no dropout, the states the exported head will see
        return self

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        wq = self.lexical.encode_dense(batch[self.q])
        wd = self.lexical.encode_dense(batch[self.d])
        logits = self.opts.scale * wq @ wd.T
        labels = torch.arange(len(logits), device=logits.device)
        nce = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        reg = _flops(wq) + _flops(wd)
        loss = nce + self.opts.flops * reg
        return loss, {"loss_lexical": float(nce.detach()), "flops": float(reg.detach()),
                      "terms_per_text": float((wd > 0).sum(1).float().mean())}

    def export(self, folder: str | Path) -> Path:
        """The trained head as a lexical encoder folder."""
        return self.lexical.save(folder)
