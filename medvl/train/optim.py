"""Optimisation of one stage: AdamW parameter groups and the learning-rate schedule (warm-up, then cosine, linear or
constant; optionally budget-aware: the decay ends at the step count or at the stage's time budget, whichever comes
first)."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from medvl.train.config import StageConfig

__all__ = ["StageClock", "build_optimizer", "build_schedule", "cosine_schedule", "lr_factor"]


def build_optimizer(objective: nn.Module, stage: StageConfig) -> torch.optim.Optimizer:
    """AdamW with one group per (lr scale, weight decay); no decay on biases, norms and the temperature."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in objective.named_parameters():
        if not p.requires_grad:
            continue
        lr_scale, wd = 1.0, stage.weight_decay
        for pg in stage.param_groups:
            if name.startswith(pg.full_prefix):
                lr_scale = pg.lr_scale
                wd = pg.weight_decay if pg.weight_decay is not None else wd
        if p.ndim < 2:
            wd = 0.0
        groups.setdefault((lr_scale, wd), []).append(p)
    params = [{"params": ps, "lr": stage.lr * s, "weight_decay": wd} for (s, wd), ps in groups.items()]
    return torch.optim.AdamW(params, lr=stage.lr, betas=tuple(stage.betas), eps=stage.eps)


class StageClock:
    """Seconds a stage has trained, carried over a resume (``offset``: the seconds before the checkpoint)."""

    def __init__(self, offset: float = 0.0):
        self.restart(offset)

    def restart(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.offset + time.perf_counter() - self.start


def lr_factor(step: int, stage: StageConfig, elapsed: float = 0.0) -> float:
    """Multiplier of the stage's lr at optimizer step ``step`` (0-based) after ``elapsed`` seconds.

    Linear warm-up over ``warmup_steps``; then ``cosine`` (after the warm-up) or ``linear`` decay to
    ``min_lr_ratio``, or ``constant``. With ``max_minutes`` the decay's progress is the larger of the step and the
    time fractions, so the lr reaches its floor at the budget when the budget ends the stage first.
    """
    warmup, total = stage.warmup_steps, stage.steps
    budget = max(0.0, elapsed / (60 * stage.max_minutes)) if stage.max_minutes else 0.0
    if stage.schedule == "cosine":
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, max((step - warmup) / max(1, total - warmup), budget))
        return stage.min_lr_ratio + (1 - stage.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    warm = min(1.0, (step + 1) / max(1, warmup))
    if stage.schedule == "constant":
        return warm
    left = max(0.0, 1.0 - max(step / max(1, total), budget))
    return warm * (stage.min_lr_ratio + (1 - stage.min_lr_ratio) * left)


def build_schedule(optimizer: torch.optim.Optimizer, stage: StageConfig,
                   clock: StageClock | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The stage's schedule as a ``LambdaLR`` (its state, the step count, is saved with the checkpoint)."""
    clock = clock or StageClock()
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, stage, clock.elapsed()))


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float = 0.0):
    """Linear warm-up to the base lr over ``warmup`` steps, then cosine decay to ``min_ratio`` x lr at ``total``."""
    stage = StageConfig(steps=max(1, total), warmup_steps=warmup, min_lr_ratio=min_ratio, schedule="cosine")
    return build_schedule(optimizer, stage)
