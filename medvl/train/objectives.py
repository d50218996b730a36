"""Stage objectives: modules that turn a batch into a loss, so the whole step runs inside one DDP forward.

``contrastive``: embeds inputs ``a`` and ``b`` (or looks ``b`` up in pre-computed embeddings) and sums the
configured losses. ``supervised``: a linear head on one tower's features, cross-entropy (or per-label sigmoid).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medvl.errors import ConfigError
from medvl.losses.registry import LossInputs, build_losses
from medvl.registry import Registry
from medvl.train.config import StageConfig

__all__ = ["OBJECTIVES", "ContrastiveObjective", "SupervisedObjective", "build_objective", "register_objective"]

#: name -> objective class ``cls(model, stage, dataset, seed)``; the bag objectives register on first use
OBJECTIVES: Registry[type[nn.Module]] = Registry("objective", builtins=("medvl.train.lvmae", "medvl.train.bagsurv",
                                                                  "medvl.train.lexical"))


def register_objective(name: str):
    """Register an objective class (``forward(batch) -> (loss, logs)``, ``used_prefixes()``) under ``name``."""
    return OBJECTIVES.register(name)


def _modality(dataset: Any, field: str, model: Any) -> str:
    fields = getattr(dataset, "fields", {})
    if field not in fields:
        raise ConfigError(f"input '{field}' is not a field of the dataset (fields: {', '.join(fields)})")
    modality = fields[field]
    if modality not in model.towers:
        raise ConfigError(f"input '{field}' needs a '{modality}' tower; the model has {', '.join(model.modalities)}")
    return modality


@register_objective("contrastive")
class ContrastiveObjective(nn.Module):
    """Two inputs in the joint space, the configured loss terms summed with their weights."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__()
        self.model = model
        self.a, self.b = stage.inputs
        self.mod_a, self.mod_b = _modality(dataset, self.a, model), _modality(dataset, self.b, model)
        self.losses = build_losses(stage.losses)
        self.tokens = any(need.startswith("tokens_") for term in self.losses for need in term.needs)
        self.group_relatives = getattr(dataset, "group_relatives", None)
        self.cache: dict[str, tuple[dict[str, int], torch.Tensor]] = {}
        self.memo: dict[str, dict[str, torch.Tensor]] = {}

    def _frozen(self, modality: str) -> bool:
        return not any(p.requires_grad for p in self.model.towers[modality].parameters())

    def train(self, mode: bool = True) -> ContrastiveObjective:
        """Frozen towers stay in eval mode (no dropout), so their outputs are fixed and can be memoised."""
        super().train(mode)
        for modality in (self.mod_a, self.mod_b):
            if self._frozen(modality):
                self.model.towers[modality].eval()
        return self

    def _frozen_text_features(self, modality: str, texts: list[str]) -> torch.Tensor:
        memo = self.memo.setdefault(modality, {})
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            with torch.no_grad():
                memo.update(zip(todo, self.model.towers[modality].encode(todo).float(), strict=True))
        return torch.stack([memo[t] for t in texts])

    def used_prefixes(self) -> list[str]:
        """Parameters this objective trains by default."""
        prefixes = ["model.logit_scale"]
        if any(term.name == "siglip" for term in self.losses):
            prefixes.append("model.logit_bias")
        for field, modality in ((self.a, self.mod_a), (self.b, self.mod_b)):
            if field not in self.cache:
                prefixes += [f"model.towers.{modality}.", f"model.projections.{modality}."]
        return prefixes

    @torch.no_grad()
    def precompute(self, field: str, texts: list[str], batch_size: int = 64) -> None:
        """Embed every value of ``field`` once with the (frozen) model; later batches look them up."""
        was_training = self.model.training
        self.model.eval()
        modality = self.mod_a if field == self.a else self.mod_b
        unique = list(dict.fromkeys(texts))
        parts = [self.model.encode(modality, unique[i:i + batch_size]) for i in range(0, len(unique), batch_size)]
        self.cache[field] = ({t: i for i, t in enumerate(unique)}, torch.cat(parts).float())
        self.model.train(was_training)

    def _embed(self, field: str, modality: str, batch: dict[str, Any]) -> tuple[torch.Tensor, Any, Any]:
        if field in self.cache:
            index, table = self.cache[field]
            rows = torch.tensor([index[t] for t in batch[field]], device=table.device)
            return table[rows], None, None
        if self.tokens:
            tokens, mask = self.model.encode_tokens(modality, batch[field])
            feats = self.model.encode(modality, batch[field])
            return feats, tokens, mask
        value = batch[field]
        if isinstance(value, list) and self._frozen(modality):  # a frozen text tower: encode each text once
            return self.model.project(modality, self._frozen_text_features(modality, value)), None, None
        return self.model.encode(modality, value), None, None

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        ea, ta, ma = self._embed(self.a, self.mod_a, batch)
        eb, tb, mb = self._embed(self.b, self.mod_b, batch)
        second = {}
        for side, field, modality in (("a2", self.a, self.mod_a), ("b2", self.b, self.mod_b)):
            if f"{field}2" in batch and f"{field}2" not in (self.a, self.b):
                second[side] = self.model.encode(modality, batch[f"{field}2"])
        groups, concepts = batch.get("group"), batch.get("concepts")
        inputs = LossInputs(
            a=ea, b=eb, logit_scale=self.model.scale(), logit_bias=self.model.logit_bias,
            groups=groups.to(ea.device) if groups is not None else None, group_relatives=self.group_relatives,
            tokens_a=ta, tokens_b=tb, mask_a=ma, mask_b=mb,
            labels=concepts.to(ea.device) if concepts is not None else None, **second,
        )
        total = torch.zeros((), device=ea.device)
        logs: dict[str, float] = {}
        for term in self.losses:
            value = term(inputs)
            key = f"loss_{term.name}"
            logs[key if key not in logs else f"{key}_{len(logs)}"] = float(value.detach())
            total = total + term.weight * value
        return total, logs


@register_objective("supervised")
class SupervisedObjective(nn.Module):
    """A linear head on one tower's raw features, trained on the dataset's labels (stage 1 of two-stage)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int):
        super().__init__()
        self.model = model
        self.field = stage.inputs[0]
        self.modality = _modality(dataset, self.field, model)
        self.multilabel = stage.multilabel
        n_classes = len(getattr(dataset, "group_names", [])) or int(max(dataset.group_ids)) + 1
        with torch.random.fork_rng(devices=[]):  # the head's init must not move the run's RNG stream
            torch.manual_seed(seed)
            self.head = nn.Linear(model.towers[self.modality].embed_dim, n_classes)

    def used_prefixes(self) -> list[str]:
        return [f"model.towers.{self.modality}.", "head."]

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.head(self.model.towers[self.modality].encode(batch[self.field])).float()
        labels = batch["label"].to(logits.device)
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            return loss, {"loss_bce": float(loss.detach())}
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss_ce": float(loss.detach()), "train_acc": float(acc)}


def build_objective(model: nn.Module, stage: StageConfig, dataset: Any, seed: int) -> nn.Module:
    """The stage's registered objective over ``model`` and ``dataset``."""
    return OBJECTIVES.get(stage.objective)(model, stage, dataset, seed)
