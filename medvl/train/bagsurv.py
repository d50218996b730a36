"""``objective: bag_survival``: Cox risk from a bag tower (``bag-abmil`` / ``bag-attention``, or ``bag-transformer``).

The model's projection of the bag modality is the risk score: a model with ``embed_dim: 1`` and a ``linear`` (a Cox
model of the bag embedding) or ``mlp`` projection, so the saved checkpoint is the whole survival model.

The Cox partial likelihood compares each event with the cases still at risk, so a loss over one bag is zero and
small batches carry almost no signal (torchsurv #35, Patch-GCN #19, Patho-Bench #24). Three remedies, combinable:

- **accumulation**: a step takes the risks of ``batch_size`` bags (the sampler's batch, gathered over processes)
  before one Cox loss; with ``one_by_one`` the bags of a step are encoded one at a time (no padding to the longest);
- **memory bank** (``memory: M``): the detached risks, times and events of the last ``M`` cases join every step's
  risk set (torchsurv's Momentum idea, without the momentum encoder); the bank lives in the head's buffers, so a
  resumed run continues with it;
- **event-balanced batches**: ``sampler: event-balanced`` (:mod:`medvl.train.survival_sampler`).

``supremix`` adds the SupReMix contrastive-regression term (:func:`medvl.losses.supremix.supremix_loss`) on the bag
embeddings with log event times as targets (censored cases take no part), weighted by ``supremix``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.losses.cox import cox_nll
from medvl.losses.distributed import all_gather_no_grad, all_gather_with_grad
from medvl.train.config import StageConfig
from medvl.train.lvmae import bag_tower
from medvl.train.objectives import Objective, register_objective

__all__ = ["BagSurvivalObjective", "BagSurvivalOptions", "RiskBank", "bag_risk"]


@dataclass
class BagSurvivalOptions(Config):
    """Options of the ``bag_survival`` objective.

    Attributes:
        ties: Efron or Breslow handling of tied times.
        memory: recent cases kept in the risk bank (0: none).
        one_by_one: encode a step's bags one at a time (long bags of different lengths).
        supremix: weight of the SupReMix term on the bag embeddings (0: off).
        supremix_options: its ``delta`` and ``mix``.
    """

    ties: Literal["efron", "breslow"] = "efron"
    memory: int = 0
    one_by_one: bool = False
    supremix: float = 0.0
    supremix_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.memory < 0 or self.supremix < 0:
            raise ConfigError("BagSurvivalOptions: memory and supremix must be >= 0")


class RiskBank(nn.Module):
    """A ring buffer of recent (risk, time, event), kept in buffers (saved with the trainer state)."""

    def __init__(self, memory: int):
        super().__init__()
        self.memory = memory
        self.register_buffer("bank_risk", torch.zeros(memory))
        self.register_buffer("bank_time", torch.zeros(memory))
        self.register_buffer("bank_event", torch.zeros(memory, dtype=torch.bool))
        self.register_buffer("bank_size", torch.zeros((), dtype=torch.long))
        self.register_buffer("bank_next", torch.zeros((), dtype=torch.long))

    def bank(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = int(self.bank_size)
        return self.bank_risk[:n], self.bank_time[:n], self.bank_event[:n]

    @torch.no_grad()
    def push(self, risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> None:
        for r, t, e in zip(risk.float(), time.float(), event.bool(), strict=True):
            k = int(self.bank_next)
            self.bank_risk[k], self.bank_time[k], self.bank_event[k] = r, t, e
            self.bank_next.fill_((k + 1) % self.memory)
            self.bank_size.fill_(min(int(self.bank_size) + 1, self.memory))


def bag_risk(model: nn.Module, bag: dict[str, torch.Tensor], modality: str = "bag") -> torch.Tensor:
    """Risk scores ``[B]`` of a batch of bags from a bag-survival model (higher = earlier event)."""
    return model.project(modality, model.towers[modality].encode(bag), normalize=False).squeeze(-1)


@register_objective("bag_survival")
class BagSurvivalObjective(Objective):
    """Cox partial likelihood of bag risks, accumulated over a step's bags and optionally a risk bank."""

    n_inputs = 1

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        if len(stage.inputs) != 1:
            raise ConfigError(f"stage '{stage.name}': bag_survival takes one bag input")
        if getattr(dataset, "time", None) is None:
            raise ConfigError("objective 'bag_survival': the dataset has no survival outcome (give it 'time' and "
                              "'event' columns)")
        modality, _ = bag_tower(model, dataset, stage.inputs[0], "bag_survival")
        super().__init__(model, stage, dataset, seed)
        self.field, self.modality = stage.inputs[0], modality
        self.opts = BagSurvivalOptions.from_dict(stage.objective_options)
        if model.embed_dim != 1:
            raise ConfigError(f"objective 'bag_survival': the model's projection is the risk score, so it needs "
                              f"embed_dim 1 (got {model.embed_dim})")
        self.head = RiskBank(self.opts.memory)

    def used_prefixes(self) -> list[str]:
        return [f"model.towers.{self.modality}.", f"model.projections.{self.modality}.", "head."]

    def encode(self, bag: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bag embeddings ``[B, width]`` (one bag at a time with ``one_by_one``)."""
        tower = self.model.towers[self.modality]
        if not self.opts.one_by_one:
            return tower.encode(bag)
        parts = []
        for b in range(bag["mask"].shape[0]):
            n = int(bag["mask"][b].sum())
            parts.append(tower.encode({k: v[b:b + 1, :n] for k, v in bag.items()}))
        return torch.cat(parts)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.encode(batch[self.field])
        risk = self.model.project(self.modality, emb, normalize=False).squeeze(-1).float()
        time, event = batch["time"].to(risk.device).float(), batch["event"].to(risk.device).bool()
        all_risk, all_time = all_gather_with_grad(risk), all_gather_no_grad(time)
        all_event = all_gather_no_grad(event)
        eta, t, e = all_risk, all_time, all_event
        if self.opts.memory:
            bank_risk, bank_time, bank_event = self.head.bank()
            eta, t, e = torch.cat([eta, bank_risk]), torch.cat([t, bank_time]), torch.cat([e, bank_event])
            self.head.push(all_risk.detach(), all_time, all_event)
        loss = cox_nll(eta, t, e, self.opts.ties)
        logs = {"loss_cox": float(loss.detach()), "events": float(all_event.sum()), "risk_set": float(len(eta))}
        if self.opts.supremix:
            from medvl.losses.supremix import supremix_loss

            term = supremix_loss(emb, torch.log1p(time), self.model.scale(), event, **self.opts.supremix_options)
            logs["loss_supremix"] = float(term.detach())
            loss = loss + self.opts.supremix * term
        return loss, logs
