"""The training engine: a plain PyTorch loop with DDP, bf16 autocast, accumulation and exact resume.

``train(config, out, resume=False)`` runs every stage of a :class:`TrainConfig` and writes into ``out``:
``run_config.json`` (resolved config), ``metrics.jsonl`` (one line per logged step), ``checkpoints/`` (resumable),
``model/`` (the final checkpoint folder, loadable with ``medvl.models.create_model``) and ``summary.json``.
Launched by ``torchrun``, each process trains on its slice of every global batch (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medvl.atomic import atomic_write_json, atomic_write_text
from medvl.errors import ConfigError, MedvlError
from medvl.log import get_logger, progress
from medvl.train.config import StageConfig, TrainConfig
from medvl.train.data import build_dataset, collate
from medvl.train.samplers import build_sampler
from medvl.train.state import (
    TrainState,
    latest_checkpoint,
    load_train_state,
    model_fingerprint,
    save_train_checkpoint,
)

__all__ = ["TrainingDiverged", "build_optimizer", "cosine_schedule", "train"]

log = get_logger(__name__)


class TrainingDiverged(MedvlError):
    """The loss became NaN or infinite; the run stopped without overwriting the last good checkpoint."""


# ------------------------------------------------------------------------------------------------ processes
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun describes in the environment (a single process otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        started = True
    return Dist(rank, world, local, dev, started)


# ------------------------------------------------------------------------------------------------ optimisation
def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float = 0.0):
    """Linear warm-up to the base lr over ``warmup`` steps, then cosine decay to ``min_ratio`` x lr at ``total``."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress_ = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress_))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def select_trainable(objective: nn.Module, stage: StageConfig) -> None:
    """Freeze every parameter the stage does not train (its ``train_only`` prefixes, else what the losses use)."""
    prefixes = [f"model.{p}" for p in stage.train_only] or objective.used_prefixes()
    named = dict(objective.named_parameters())
    for name, p in named.items():
        p.requires_grad_(any(name.startswith(pre) for pre in prefixes) or name.startswith("head."))
    for pg in stage.param_groups:
        hits = [n for n in named if n.startswith(f"model.{pg.prefix}")]
        if not hits:
            raise ConfigError(f"stage '{stage.name}': param_groups prefix '{pg.prefix}' matches no parameter")
        if pg.freeze:
            for n in hits:
                named[n].requires_grad_(False)
    if not any(p.requires_grad for p in named.values()):
        raise ConfigError(f"stage '{stage.name}': every parameter is frozen")


def build_optimizer(objective: nn.Module, stage: StageConfig) -> torch.optim.Optimizer:
    """AdamW with one group per (lr scale, weight decay); no decay on biases, norms and the temperature."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in objective.named_parameters():
        if not p.requires_grad:
            continue
        lr_scale, wd = 1.0, stage.weight_decay
        for pg in stage.param_groups:
            if name.startswith(f"model.{pg.prefix}"):
                lr_scale = pg.lr_scale
                wd = pg.weight_decay if pg.weight_decay is not None else wd
        if p.ndim < 2:
            wd = 0.0
        groups.setdefault((lr_scale, wd), []).append(p)
    params = [{"params": ps, "lr": stage.lr * s, "weight_decay": wd} for (s, wd), ps in groups.items()]
    return torch.optim.AdamW(params, lr=stage.lr, betas=(0.9, 0.98), eps=1e-6)


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors (also inside a mapping, e.g. a padded bag) to ``device``."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
        elif isinstance(v, dict):
            v = _move(v, device)
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------------ metrics
class Metrics:
    """JSONL metrics (rank 0), TensorBoard when installed."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, resume_step: int):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # a resumed run drops what came after its checkpoint
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("global_step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"{record['stage']}/{key}", value, record["global_step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------------------ the loop
class StageRunner:
    """Runs one stage: data, objective, optimizer and schedule; steps, logs and checkpoints."""

    def __init__(self, trainer: Trainer, index: int):
        self.t = trainer
        self.index = index
        self.stage = trainer.config.stages[index]
        data_cfg = trainer.config.stage_data(index)
        self.dataset = build_dataset(data_cfg.dataset, data_cfg.options)
        if data_cfg.batch_size % trainer.dist.world:
            raise ConfigError(f"batch_size {data_cfg.batch_size} is not divisible by {trainer.dist.world} processes")
        self.sampler = build_sampler(data_cfg.sampler, self.dataset, data_cfg.batch_size,
                                     data_cfg.groups_per_batch, trainer.config.seed + index, data_cfg.sampler_options)
        from medvl.train.objectives import build_objective

        self.objective = build_objective(trainer.model, self.stage, self.dataset, trainer.config.seed + index)
        self.objective.to(trainer.dist.device)
        for field in self.stage.precompute:
            self.objective.precompute(field, self.dataset.texts())
        select_trainable(self.objective, self.stage)
        self.optimizer = build_optimizer(self.objective, self.stage)
        self.scheduler = cosine_schedule(self.optimizer, self.stage.warmup_steps, self.stage.steps,
                                         self.stage.min_lr_ratio)
        self.wrapped: nn.Module = self.objective
        if trainer.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [trainer.dist.device.index] if trainer.dist.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.objective, device_ids=ids,
                                                   find_unused_parameters=trainer.config.find_unused_parameters)

    @property
    def head(self) -> nn.Module | None:
        return getattr(self.objective, "head", None)

    def restore(self, payload: dict[str, Any]) -> None:
        if payload.get("optimizer") is not None:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("head") is not None and self.head is not None:
            self.head.load_state_dict(payload["head"])

    def _batches(self, state: TrainState):
        """Global batches from the saved data position on, this process's slice of each, collated."""
        d = self.t.dist
        while True:
            batches = self.sampler.batches(state.epoch)
            while state.batch_in_epoch < len(batches):
                indices = batches[state.batch_in_epoch]
                state.batch_in_epoch += 1
                n = len(indices) // d.world
                local = indices[d.rank * n:(d.rank + 1) * n]
                seed = self.t.config.seed * 7919 + state.epoch * 104729
                items = [self.dataset.item(i, torch.Generator().manual_seed(seed + i)) for i in local]
                yield _move(collate(items), d.device)
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    def _forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        dev = self.t.dist.device
        amp = torch.autocast(dev.type, dtype=torch.bfloat16) if self.t.config.precision == "bf16" else nullcontext()
        with amp:
            return self.wrapped(batch)

    def _check_finite(self, loss: torch.Tensor, state: TrainState) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=loss.device)
        if self.t.dist.world > 1:
            dist.all_reduce(bad)
        if bad.item():
            last = latest_checkpoint(self.t.out)
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"the loss is {float(loss.detach())} at step {state.step + 1} of stage '{self.stage.name}' "
                f"(global step {state.global_step + 1}); stopping: {where} (lower the lr or use fp32)"
            )

    def step(self, batches, state: TrainState) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.stage.grad_accum
        total, logs = 0.0, {}
        for micro in range(accum):
            batch = next(batches)
            sync = nullcontext() if micro == accum - 1 or self.t.dist.world == 1 else self.wrapped.no_sync()
            with sync:
                loss, logs = self._forward(batch)
                self._check_finite(loss, state)
                (loss / accum).backward()
            total += float(loss.detach()) / accum
        if self.stage.max_grad_norm:
            params = [p for p in self.objective.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.stage.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": total, **logs}

    def run(self, state: TrainState) -> None:
        t, cfg = self.t, self.t.config
        self.objective.train()
        batches = self._batches(state)
        global_batch = cfg.stage_data(self.index).batch_size * self.stage.grad_accum
        steps = range(state.step, self.stage.steps)
        bar = progress(steps, total=len(steps), desc=f"train {self.stage.name}", unit="step") if t.dist.main else steps
        tick = time.perf_counter()
        for _ in bar:
            record = self.step(batches, state)
            state.step += 1
            state.global_step += 1
            if state.step % cfg.log_every == 0 or state.step == self.stage.steps:
                now = time.perf_counter()
                t.metrics.write({
                    "stage": self.stage.name, "step": state.step, "global_step": state.global_step,
                    "lr": self.scheduler.get_last_lr()[0], "logit_scale": float(t.model.scale().detach()),
                    "samples_per_s": round(global_batch * cfg.log_every / max(now - tick, 1e-9), 2), **record,
                })
                tick = now
            t.last_loss = record["loss"]
            if state.step == self.stage.steps:
                break
            if state.global_step % cfg.checkpoint_every == 0:
                t.checkpoint(state, self)

    def close(self) -> None:
        if isinstance(self.wrapped, nn.parallel.DistributedDataParallel):
            del self.wrapped


class Trainer:
    """Holds the model, the process group and the run folder; runs the stages in order."""

    def __init__(self, config: TrainConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.dist = init_distributed(config.device)
        self.last_loss: float | None = None
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        from medvl.models import create_model
        from medvl.models.checkpoint import checkpoint_config

        self.model = create_model(config.model_config or config.model)
        if config.grad_checkpointing:
            for tower in self.model.towers.values():
                tower.set_grad_checkpointing(True)
        self.model.to(self.dist.device)
        self.fingerprint = model_fingerprint(checkpoint_config(self.model))

    def checkpoint(self, state: TrainState, runner: StageRunner | None) -> None:
        if self.dist.main:
            save_train_checkpoint(
                self.out, self.model, state, self.fingerprint,
                optimizer=runner.optimizer if runner else None, scheduler=runner.scheduler if runner else None,
                head=runner.head if runner else None, keep=self.config.keep_checkpoints,
            )
        self.dist.barrier()

    def run(self, resume: bool = False) -> dict[str, Any]:
        cfg = self.config
        state, payload = TrainState(), None
        if resume:
            folder = latest_checkpoint(self.out)
            if folder is None:
                log.warning("no checkpoint in %s: starting from the beginning", self.out)
            else:
                payload = load_train_state(folder, self.model, self.fingerprint)
                state = payload["state"]
                log.info("resuming from %s (stage %d, step %d)", folder, state.stage, state.step)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.to_file(self.out / "run_config.json")
        self.metrics = Metrics(self.out, self.dist.main, cfg.tensorboard, state.global_step)
        start = time.perf_counter()
        try:
            for index in range(state.stage, len(cfg.stages)):
                runner = StageRunner(self, index)
                if payload is not None and payload["state"].stage == index:
                    runner.restore(payload)
                runner.run(state)
                if self.dist.main and hasattr(runner.objective, "export"):
                    # what an objective trains beside the model (e.g. a lexical head) goes next to it
                    runner.objective.export(self.out / "objectives" / runner.stage.name)
                state = TrainState(stage=index + 1, global_step=state.global_step)
                self.checkpoint(state, None)
                runner.close()
        finally:
            self.metrics.close()
        return self._finish(state, time.perf_counter() - start)

    def _finish(self, state: TrainState, seconds: float) -> dict[str, Any]:
        summary = {
            "out": str(self.out), "model": str(self.out / "model"), "recipe": self.config.recipe,
            "stages": [s.name for s in self.config.stages], "global_steps": state.global_step,
            "final_loss": self.last_loss, "seconds": round(seconds, 2), "processes": self.dist.world,
            "device": str(self.dist.device), "precision": self.config.precision,
        }
        if self.dist.main:
            self.model.save(self.out / "model")
            atomic_write_json(self.out / "summary.json", summary)
        self.dist.barrier()
        return summary

    def close(self) -> None:
        if self.dist.started and dist.is_initialized():
            # free DDP wrappers (their reducers hold gloo work and tensors, often in reference cycles) while the
            # interpreter is alive: gloo threads releasing them during interpreter shutdown can SIGABRT
            gc.collect()
            dist.destroy_process_group()


def train(config: TrainConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run a training config into the folder ``out``; with ``resume`` continue from its latest checkpoint."""
    trainer = Trainer(config, out)
    try:
        return trainer.run(resume)
    finally:
        trainer.close()
