"""``rtd``: ELECTRA's replaced-token detection on the text tower, which is the discriminator.

A small generator (a BERT of the discriminator's depth at ``generator_fraction`` of its width) shares the
discriminator's token embeddings (projected to its width), predicts the masked tokens (MLM), and samples a
replacement for each; the discriminator then classifies every token of the corrupted text as original or replaced.
The loss is the generator's MLM loss plus ``discriminator_weight`` x the discriminator's, both means over every
process. Sampling uses a generator per text seeded by (seed, step, text), like the masking, so a batch is corrupted
the same way for any number of processes and after a resume. Generator and heads are the stage's ``head`` (in the
trainer state); only the discriminator is the trained model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.train.config import StageConfig
from medvl.train.objectives import register_objective
from medvl.train.text.common import LMHead, TextObjective, concept_tagger, global_mean
from medvl.train.text.masking import IGNORE, Masker, MaskingConfig, text_seed

__all__ = ["RTDConfig", "RTDObjective"]


@dataclass
class RTDConfig(Config):
    """Options of ``rtd`` (``objective_options``).

    Attributes:
        masking: which tokens the generator fills (default whole-word, 15 %).
        generator_fraction: the generator's width as a fraction of the discriminator's (ELECTRA: 1/4 to 1/2).
        discriminator_weight: weight of the replaced-token loss (ELECTRA: 50).
    """

    masking: MaskingConfig = field(default_factory=MaskingConfig)
    generator_fraction: float = 0.25
    discriminator_weight: float = 50.0

    def validate(self) -> None:
        if not 0 < self.generator_fraction <= 1:
            raise ConfigError("RTDConfig.generator_fraction: must be within (0, 1]")


def small_generator(config: Any, fraction: float) -> nn.Module:
    """A BERT-style encoder of ``config``'s depth at ``fraction`` of its width (whole attention heads)."""
    from transformers import AutoModel

    head_dim = config.hidden_size // config.num_attention_heads
    heads = max(1, round(config.num_attention_heads * fraction))
    small = copy.deepcopy(config)
    small.hidden_size, small.num_attention_heads = heads * head_dim, heads
    small.intermediate_size = max(1, round(config.intermediate_size * fraction))
    small.vocab_size, small.pad_token_id = 2, 0  # its inputs are the shared embeddings: no table of its own
    model = AutoModel.from_config(small, add_pooling_layer=False)
    model.embeddings.word_embeddings = nn.Identity()
    return model


class ELECTRAHead(nn.Module):
    """The generator, its embedding projection and MLM head, and the discriminator's token classifier."""

    def __init__(self, config: Any, vocab: int, fraction: float):
        super().__init__()
        width = config.hidden_size
        self.generator = small_generator(config, fraction)
        small = self.generator.config.hidden_size
        eps = getattr(config, "layer_norm_eps", 1e-12)
        self.project = nn.Linear(width, small)
        self.generator_head = LMHead(small, vocab, eps, width=width)
        self.discriminator = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))


@register_objective("rtd")
class RTDObjective(TextObjective):
    """Replaced-token detection (see the module docstring)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        try:
            self.cfg = RTDConfig.from_dict(stage.objective_options)
        except ConfigError as exc:
            raise ConfigError(f"stage '{stage.name}' objective_options: {exc}") from None
        m = self.cfg.masking
        tagger = concept_tagger(self.tower.tokenizer, m.concept_sources, m.concept_source) \
            if m.strategy == "concept" else None
        self.masker = Masker(m, self.tower.tokenizer, self.tower.max_length, tagger)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = ELECTRAHead(self.tower.model.config, self.vocab, self.cfg.generator_fraction)

    def _sample(self, logits: torch.Tensor, rows: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Gumbel-max samples of the generator's distributions, noise seeded per text (layout-independent)."""
        noise = torch.empty_like(logits)
        for row in rows.unique().tolist():
            pick = rows == row
            gen = torch.Generator().manual_seed(text_seed(self.seed + 1, self.step, texts[row]))
            uniform = torch.rand((int(pick.sum()), logits.shape[1]), generator=gen).clamp_(1e-9, 1 - 1e-9)
            noise[pick] = -torch.log(-torch.log(uniform)).to(logits.device)
        return (logits.detach() + noise).argmax(-1)

    def _generator(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded = self.head.project(self.tower.model.get_input_embeddings()(inputs["input_ids"]))
        extra = {k: v for k, v in inputs.items() if k in ("attention_mask", "token_type_ids")}
        return self.head.generator(inputs_embeds=embedded, **extra).last_hidden_state

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        texts = batch[self.field]
        masked = self.masker(texts, self.seed, self.step)
        device = self.embeddings().device
        inputs = {k: v.to(device) for k, v in masked.inputs.items()}
        labels, original = masked.labels.to(device), masked.original.to(device)
        chosen = labels != IGNORE
        gen_hidden = self._generator(inputs)
        with torch.autocast(device.type, enabled=False):
            logits = self.head.generator_head(gen_hidden[chosen].float(), self.embeddings().float())
            gen_loss = global_mean(F.cross_entropy(logits, labels[chosen], reduction="sum"), chosen.sum())
        corrupted = original.clone()
        corrupted[chosen] = self._sample(logits, chosen.nonzero()[:, 0], texts)
        replaced = (corrupted != original).float()
        hidden = self.hidden({**inputs, "input_ids": corrupted})
        real = inputs["attention_mask"].bool()
        with torch.autocast(device.type, enabled=False):
            scores = self.head.discriminator(hidden.float()).squeeze(-1)
            total = F.binary_cross_entropy_with_logits(scores[real], replaced[real], reduction="sum")
            disc_loss = global_mean(total, real.sum())
            loss = gen_loss + self.cfg.discriminator_weight * disc_loss
        acc = ((scores[real] > 0).float() == replaced[real]).float().mean()
        return loss, {"loss_generator": float(gen_loss.detach()), "loss_discriminator": float(disc_loss.detach()),
                      "replaced_share": float(replaced[real].mean()), "disc_acc": float(acc)}
