"""Stage objectives (a registry): modules that turn a batch into a loss, so the whole step runs inside one DDP forward.

Every objective subclasses :class:`Objective` and is registered with ``@register_objective(name)``; a stage names it
(``objective: contrastive``). It is built as ``cls(model, stage, dataset, seed)`` and implements
``forward(batch) -> (loss, logs)`` and ``used_prefixes()`` (the parameters it trains by default). The base class gives
every objective the frozen-layer cache (:meth:`Objective.features`), eval mode for frozen towers, and the hooks the
engine calls: :meth:`~Objective.prepare` (once, before the first step, inside the stage's time budget) and
:meth:`~Objective.before_step`.

``contrastive``: embeds inputs ``a`` and ``b`` (or looks ``b`` up in pre-computed embeddings) and sums the configured
losses; a ``b`` field holding a list per item gives the anchor several positives. ``supervised``: a linear head on
one tower's features, cross-entropy (or per-label sigmoid).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medvl.errors import ConfigError
from medvl.losses.registry import LossInputs, build_losses
from medvl.registry import Registry
from medvl.train.bank import GroupBank
from medvl.train.config import StageConfig
from medvl.train.frozen_cache import FrozenLayerCache

__all__ = ["OBJECTIVES", "ContrastiveObjective", "Objective", "SupervisedObjective", "build_objective",
           "register_objective"]

#: name -> objective class
OBJECTIVES: Registry[type[Objective]] = Registry(
    "objective", builtins=("medvl.train.objectives", "medvl.train.lvmae", "medvl.train.bagsurv",
                           "medvl.train.lexical", "medvl.train.text.mlm", "medvl.train.text.distill",
                           "medvl.train.text.rtd"))  # add the modules of new objectives here


def register_objective(name: str):
    """Register an :class:`Objective` subclass under ``name``."""
    return OBJECTIVES.register(name)


def _modality(dataset: Any, field: str, model: Any) -> str:
    fields = getattr(dataset, "fields", {})
    if field not in fields:
        raise ConfigError(f"input '{field}' is not a field of the dataset (fields: {', '.join(fields)})")
    modality = fields[field]
    if modality not in model.towers:
        raise ConfigError(f"input '{field}' needs a '{modality}' tower; the model has {', '.join(model.modalities)}")
    return modality


class Objective(nn.Module):
    """The interface of an objective (see the module docstring).

    Attributes:
        n_inputs: how many dataset fields the objective takes (``stage.inputs``).
        modalities: the towers it runs.
    """

    n_inputs: ClassVar[int] = 1

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int):
        super().__init__()
        if len(stage.inputs) != self.n_inputs:
            raise ConfigError(f"stage '{stage.name}': the {stage.objective} objective takes {self.n_inputs} "
                              f"input(s), got {len(stage.inputs)}")
        self.model = model
        self.stage = stage
        self.modalities = list(dict.fromkeys(_modality(dataset, f, model) for f in stage.inputs))
        self.caches: dict[str, FrozenLayerCache] = {}

    def used_prefixes(self) -> list[str]:
        """Parameters this objective trains by default (``model.``-prefixed names)."""
        raise NotImplementedError

    def precompute(self, field: str, texts: list[str]) -> None:
        raise ConfigError(f"the {self.stage.objective} objective cannot pre-compute inputs")

    def _frozen(self, modality: str) -> bool:
        return not any(p.requires_grad for p in self.model.towers[modality].parameters())

    def train(self, mode: bool = True) -> Objective:
        """Frozen towers stay in eval mode (no dropout), so their outputs are fixed and can be memoised; with
        ``dropout: false`` every tower does."""
        super().train(mode)
        for modality in self.modalities:
            if self._frozen(modality) or not self.stage.dropout:
                self.model.towers[modality].eval()
        return self

    def prepare(self, dataset: Any) -> None:
        """Before the first step: the frozen-layer caches (``cache_frozen``) over every text of the dataset."""
        if not self.stage.cache_frozen:
            return
        for modality, layers in self.stage.freeze_layers.items():
            if modality in self.modalities:
                self.caches[modality] = FrozenLayerCache(self.model.towers[modality], layers, dataset.texts())

    def before_step(self, step: int) -> None:
        """Called before every optimizer step (``step``: steps done in the stage), under the stage's precision."""

    def features(self, modality: str, value: Any) -> torch.Tensor:
        """The tower's pooled features: from the frozen-layer cache where there is one."""
        if modality in self.caches and isinstance(value, list):
            return self.caches[modality].features(value)
        return self.model.towers[modality].encode(value)

    def embed(self, modality: str, value: Any) -> torch.Tensor:
        """Joint-space (projected, L2-normalised) embeddings."""
        return self.model.project(modality, self.features(modality, value))


def _fp32(inputs: LossInputs) -> LossInputs:
    """Every floating tensor of ``inputs`` in float32 (embeddings from bf16 towers; the losses compute in fp32)."""
    changes = {f.name: getattr(inputs, f.name).float() for f in dataclasses.fields(inputs)
               if isinstance(getattr(inputs, f.name), torch.Tensor) and getattr(inputs, f.name).is_floating_point()}
    return dataclasses.replace(inputs, **changes)


def _flatten(values: list) -> tuple[list, list[int] | None]:
    """A field holding a list per item: the values one after another and the item each belongs to."""
    if not values or not isinstance(values[0], (list, tuple)):
        return values, None
    return [v for vs in values for v in vs], [i for i, vs in enumerate(values) for _ in vs]


@register_objective("contrastive")
class ContrastiveObjective(Objective):
    """Two inputs in the joint space, the configured loss terms summed with their weights."""

    n_inputs = 2

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        self.a, self.b = stage.inputs
        self.mod_a, self.mod_b = _modality(dataset, self.a, model), _modality(dataset, self.b, model)
        self.losses = build_losses(stage.losses)
        self.tokens = any(need.startswith("tokens_") for term in self.losses for need in term.needs)
        self.group_relatives = getattr(dataset, "group_relatives", None)
        self.cache: dict[str, tuple[dict[str, int], torch.Tensor]] = {}
        self.memo: dict[str, dict[str, torch.Tensor]] = {}
        self.bank: GroupBank | None = None
        if any("bank" in term.needs for term in self.losses):
            if getattr(dataset, "group_texts", None) is None:
                raise ConfigError(f"stage '{stage.name}': the bank loss needs a dataset with group_texts")
            self.bank = GroupBank(dataset.group_texts, stage.bank_every)

    def _frozen_text_features(self, modality: str, texts: list[str]) -> torch.Tensor:
        memo = self.memo.setdefault(modality, {})
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            with torch.no_grad():
                memo.update(zip(todo, self.model.towers[modality].encode(todo).float(), strict=True))
        return torch.stack([memo[t] for t in texts])

    def used_prefixes(self) -> list[str]:
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

    def before_step(self, step: int) -> None:
        """Re-encode the group bank when it is due (eval mode, no gradients)."""
        if self.bank is None or not self.bank.due(step):
            return
        was_training = self.training
        self.eval()
        try:
            self.bank.refresh(lambda texts: self.embed(self.mod_a, texts))
        finally:
            self.train(was_training)

    def _embed(self, field: str, modality: str, value: Any) -> tuple[torch.Tensor, Any, Any]:
        if field in self.cache:
            index, table = self.cache[field]
            rows = torch.tensor([index[t] for t in value], device=table.device)
            return table[rows], None, None
        if self.tokens:
            tokens, mask = self.model.encode_tokens(modality, value)
            return self.model.encode(modality, value), tokens, mask
        if isinstance(value, list) and self._frozen(modality) and modality not in self.caches:
            return self.model.project(modality, self._frozen_text_features(modality, value)), None, None
        return self.embed(modality, value), None, None

    def _second_views(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        second = {}
        for side, field, modality in (("a2", self.a, self.mod_a), ("b2", self.b, self.mod_b)):
            if f"{field}2" in batch and f"{field}2" not in (self.a, self.b):
                second[side] = self.model.encode(modality, batch[f"{field}2"])
        return second

    def _inputs(self, batch: dict[str, Any]) -> LossInputs:
        value_b, rows = _flatten(batch[self.b])
        if rows is not None and self.tokens:
            raise ConfigError(f"stage '{self.stage.name}': token losses take one '{self.b}' per item, not a list")
        ea, ta, ma = self._embed(self.a, self.mod_a, batch[self.a])
        eb, tb, mb = self._embed(self.b, self.mod_b, value_b)
        groups = batch.get("group")
        groups = groups.to(ea.device) if groups is not None else None
        bank = self.bank.table(groups, ea, batch[self.a]) if self.bank is not None else None
        if rows is not None:  # several positives per anchor: the anchor's row repeats for each
            index = torch.tensor(rows, device=ea.device)
            ea, groups = ea[index], groups[index] if groups is not None else None
        concepts = batch.get("concepts")
        if concepts is not None and rows is not None:
            concepts = concepts[torch.tensor(rows)]
        return LossInputs(
            a=ea, b=eb, logit_scale=self.model.scale(), logit_bias=self.model.logit_bias, groups=groups,
            group_relatives=self.group_relatives, tokens_a=ta, tokens_b=tb, mask_a=ma, mask_b=mb, bank=bank,
            labels=concepts.to(ea.device) if concepts is not None else None,
            **(self._second_views(batch) if rows is None else {}),
        )

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = _fp32(self._inputs(batch))
        total = torch.zeros((), device=inputs.a.device)
        logs: dict[str, float] = {}
        with torch.autocast(inputs.a.device.type, enabled=False):  # the towers ran under autocast, the losses do not
            for term in self.losses:
                value = term(inputs)
                key = f"loss_{term.name}"
                logs[key if key not in logs else f"{key}_{len(logs)}"] = float(value.detach())
                total = total + term.weight * value
        return total, logs


@register_objective("supervised")
class SupervisedObjective(Objective):
    """A linear head on one tower's raw features, trained on the dataset's labels (stage 1 of two-stage)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        self.field = stage.inputs[0]
        self.modality = _modality(dataset, self.field, model)
        self.multilabel = stage.multilabel
        classes = getattr(dataset, "label_names", None) or getattr(dataset, "group_names", [])  # label_names: labels
        n_classes = len(classes) or int(max(dataset.group_ids)) + 1
        with torch.random.fork_rng(devices=[]):  # the head's init must not move the run's RNG stream
            torch.manual_seed(seed)
            self.head = nn.Linear(model.towers[self.modality].embed_dim, n_classes)

    def used_prefixes(self) -> list[str]:
        return [f"model.towers.{self.modality}.", "head."]

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.head(self.features(self.modality, batch[self.field])).float()
        labels = batch["label"].to(logits.device)
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            return loss, {"loss_bce": float(loss.detach())}
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss_ce": float(loss.detach()), "train_acc": float(acc)}


def build_objective(model: nn.Module, stage: StageConfig, dataset: Any, seed: int) -> Objective:
    """The stage's registered objective over ``model`` and ``dataset``."""
    return OBJECTIVES.get(stage.objective)(model, stage, dataset, seed)
