"""The training engine: a plain PyTorch loop with DDP, bf16 autocast, accumulation and exact resume.

``train(config, out, resume=False)`` runs every stage of a :class:`TrainConfig` and writes into ``out``:
``run_config.json`` (resolved config), ``metrics.jsonl`` (one line per logged step), ``checkpoints/`` (resumable),
``model/`` (the final checkpoint folder, loadable with ``medvl.models.create_model``) and ``summary.json``.
Launched by ``torchrun``, each process trains on its slice of every global batch (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import gc
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medvl.atomic import atomic_write_json
from medvl.errors import ConfigError, MedvlError
from medvl.log import get_logger, progress
from medvl.train.best import BestCheckpoint
from medvl.train.config import StageConfig, TrainConfig
from medvl.train.data import build_dataset
from medvl.train.distributed import init_distributed
from medvl.train.evaluations import run_evaluations
from medvl.train.loading import local_batches
from medvl.train.metrics import Metrics
from medvl.train.optim import StageClock, build_optimizer, build_schedule, cosine_schedule
from medvl.train.recording import record_training_data
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


# ------------------------------------------------------------------------------------------------ parameters
def select_trainable(objective: nn.Module, stage: StageConfig) -> None:
    """Freeze every parameter the stage does not train (its ``train_only`` prefixes, else what the losses use), the
    lower layers of ``freeze_layers`` and the ``param_groups`` marked ``freeze``."""
    prefixes = [f"model.{p}" for p in stage.train_only] or objective.used_prefixes()
    named = dict(objective.named_parameters())
    for name, p in named.items():
        p.requires_grad_(any(name.startswith(pre) for pre in prefixes) or name.startswith("head."))
    for modality, layers in stage.freeze_layers.items():
        if modality not in objective.model.towers:
            raise ConfigError(f"stage '{stage.name}': freeze_layers names '{modality}', which has no tower")
        for module in objective.model.towers[modality].lower_modules(layers):
            module.requires_grad_(False)
    for pg in stage.param_groups:
        hits = [n for n in named if n.startswith(pg.full_prefix)]
        if not hits:
            raise ConfigError(f"stage '{stage.name}': param_groups prefix '{pg.prefix}' matches no parameter")
        if pg.freeze:
            for n in hits:
                named[n].requires_grad_(False)
    if not any(p.requires_grad for p in named.values()):
        raise ConfigError(f"stage '{stage.name}': every parameter is frozen")


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
        if hasattr(self.dataset, "stream") and data_cfg.sampler != "shuffled":
            raise ConfigError(f"dataset '{data_cfg.dataset}' is streamed: it shuffles itself (sampler: shuffled), "
                              f"'{data_cfg.sampler}' cannot apply")
        self.sampler = build_sampler(data_cfg.sampler, self.dataset, data_cfg.batch_size,
                                     data_cfg.groups_per_batch, trainer.config.seed + index, data_cfg.sampler_options)
        from medvl.train.objectives import build_objective

        self.objective = build_objective(trainer.model, self.stage, self.dataset, trainer.config.seed + index)
        self.objective.to(trainer.dist.device)
        for field in self.stage.precompute:
            self.objective.precompute(field, self.dataset.texts())
        select_trainable(self.objective, self.stage)
        record_training_data(trainer.model, self.dataset, self.stage.inputs)  # saved in the checkpoint
        self.optimizer = build_optimizer(self.objective, self.stage)
        self.clock = StageClock()
        self.scheduler = build_schedule(self.optimizer, self.stage, self.clock)
        self.budget_reached = False
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
        if hasattr(self.dataset, "stream"):  # streamed data (WebDataset shards): its own order, split and resume
            local = self.t.config.stage_data(self.index).batch_size // d.world
            for epoch, b, batch in self.dataset.stream(state.epoch, state.batch_in_epoch, local, d.rank, d.world,
                                                       self.t.config.seed + self.index):
                state.epoch, state.batch_in_epoch = epoch, b + 1
                yield _move(batch, d.device)
        workers = self.t.config.stage_data(self.index).workers
        while True:
            batches = self.sampler.batches(state.epoch)
            seed = self.t.config.seed * 7919 + state.epoch * 104729
            for batch in local_batches(self.dataset, batches, state.batch_in_epoch, d.rank, d.world, seed, workers):
                state.batch_in_epoch += 1
                yield _move(batch, d.device)
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    def _autocast(self):
        dev = self.t.dist.device
        return torch.autocast(dev.type, dtype=torch.bfloat16) if self.t.config.precision == "bf16" else nullcontext()

    def _forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        with self._autocast():
            return self.wrapped(batch)

    def _out_of_time(self) -> bool:
        """Whether the stage's time budget is spent (every process agrees: the first one out stops them all)."""
        if not self.stage.max_minutes:
            return False
        spent = torch.tensor([float(self.clock.elapsed() >= 60 * self.stage.max_minutes)])
        if self.t.dist.world > 1:
            spent = spent.to(self.t.dist.device)
            dist.all_reduce(spent, op=dist.ReduceOp.MAX)
        return bool(spent.item())

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
        with self._autocast():
            self.objective.before_step(state.step)
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
        """Train the stage from ``state`` to its last step (or to its time budget)."""
        t, cfg = self.t, self.t.config
        self.clock.restart(state.seconds)  # the budget covers the caches built now, not the evaluations before
        self.objective.prepare(self.dataset)
        self.objective.train()
        batches = self._batches(state)
        steps = range(state.step, self.stage.steps)
        bar = progress(steps, total=len(steps), desc=f"train {self.stage.name}", unit="step") if t.dist.main else steps
        self.tick = time.perf_counter()
        for _ in bar:
            record = self.step(batches, state)
            state.step += 1
            state.global_step += 1
            self.budget_reached = self._out_of_time()
            last = state.step == self.stage.steps or self.budget_reached
            if state.step % cfg.log_every == 0 or last:
                self._log(record, state)
            t.last_loss = record["loss"]
            if last:
                break
            if self.stage.eval_every and state.step % self.stage.eval_every == 0:
                t._evaluate(self, "step", state)
            if state.global_step % cfg.checkpoint_every == 0:
                state.seconds = self.clock.elapsed()
                t.checkpoint(state, self)
        if self.budget_reached and t.dist.main:
            log.warning("stage '%s': time budget of %s min reached after %d of %d steps", self.stage.name,
                        self.stage.max_minutes, state.step, self.stage.steps)
        self.seconds = self.clock.elapsed()

    def _log(self, record: dict[str, float], state: TrainState) -> None:
        cfg = self.t.config
        now = time.perf_counter()
        done = (state.step - 1) % cfg.log_every + 1  # steps since the last line
        global_batch = cfg.stage_data(self.index).batch_size * self.stage.grad_accum
        self.t.metrics.write({
            "stage": self.stage.name, "step": state.step, "global_step": state.global_step,
            "lr": self.scheduler.get_last_lr()[0], "logit_scale": float(self.t.model.scale().detach()),
            "samples_per_s": round(global_batch * done / max(now - self.tick, 1e-9), 2), **record,
        })
        self.tick = now

    def close(self) -> None:
        if isinstance(self.wrapped, nn.parallel.DistributedDataParallel):
            del self.wrapped


def _warn_slow_bf16(precision: str, device: torch.device) -> None:
    """bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): autocast emulates it there and runs an order of
    magnitude slower than fp32 (15x for MiniLM on an AVX2 CPU). The run keeps what was asked; the user is told."""
    if precision != "bf16" or device.type != "cpu":
        return
    cpu = getattr(torch, "cpu", None)
    if any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")):
        return
    from medvl.log import warn

    warn(f"precision bf16 on a CPU without native bf16 ({torch.backends.cpu.get_cpu_capability()}): autocast runs "
         "many times slower than fp32 here; set precision: fp32 for CPU runs")


class Trainer:
    """Holds the model, the process group and the run folder; runs the stages in order."""

    def __init__(self, config: TrainConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.dist = init_distributed(config.device)
        _warn_slow_bf16(config.precision, self.dist.device)
        self.last_loss: float | None = None
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        from medvl.models import create_model
        from medvl.models.checkpoint import checkpoint_config

        # training starts from the named model's initialisation (random towers included: they are what trains)
        self.model = create_model(config.model_config or config.model, random_weights=True)
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
                if self.dist.main and hasattr(runner.dataset, "write_report"):  # counts before step 1
                    runner.dataset.write_report(self.out, runner.stage.name)
                if payload is not None and payload["state"].stage == index:
                    runner.restore(payload)
                self._evaluate(runner, "before", state)
                runner.run(state)
                self._evaluate(runner, "after", state)
                if self.dist.main and hasattr(runner.objective, "export"):
                    # what an objective trains beside the model (e.g. a lexical head) goes next to it
                    runner.objective.export(self.out / "objectives" / runner.stage.name)
                finished = {**state.finished, runner.stage.name: {
                    "steps": state.step, "seconds": round(runner.seconds, 2), "budget_reached": runner.budget_reached}}
                state = TrainState(stage=index + 1, global_step=state.global_step, finished=finished)
                self.checkpoint(state, None)
                runner.close()
        finally:
            self.metrics.close()
        return self._finish(state, time.perf_counter() - start)

    def _evaluate(self, runner: StageRunner, when: str, state: TrainState) -> None:
        """The stage's evaluations on rank 0; a resumed stage keeps the ``before`` figures it measured first."""
        configs = runner.stage.evaluate
        if configs and self.dist.main:
            done = {r["evaluation"] for r in self.metrics.records()
                    if r.get("stage") == runner.stage.name and r.get("when") == when and "evaluation" in r
                    and (when != "step" or r.get("step") == state.step)}
            todo = [c for c in configs if c.name not in done]
            results = run_evaluations(self.model, runner.dataset, todo) if todo else {}
            for name, figures in results.items():
                self.metrics.write({"stage": runner.stage.name, "step": state.step, "global_step": state.global_step,
                                    "evaluation": name, "when": when, **figures})
                log.info("%s %s (%s): %s", runner.stage.name, name, when, figures)
            if when != "before":
                BestCheckpoint(self.out).offer(self.model, runner.stage, results, state.step, state.global_step)
        self.dist.barrier()

    def _evaluations(self) -> dict[str, Any]:
        """stage -> evaluation -> ``before`` / ``after`` -> figures, from ``metrics.jsonl``."""
        evaluations: dict[str, Any] = {}
        keys = ("stage", "step", "global_step", "evaluation", "when")
        for r in self.metrics.records():
            if "evaluation" in r:
                figures = {k: v for k, v in r.items() if k not in keys}
                evaluations.setdefault(r["stage"], {}).setdefault(r["evaluation"], {})[r["when"]] = figures
        return evaluations

    def _finish(self, state: TrainState, seconds: float) -> dict[str, Any]:
        summary = {
            "out": str(self.out), "model": str(self.out / "model"), "recipe": self.config.recipe,
            "stages": [s.name for s in self.config.stages], "global_steps": state.global_step,
            "final_loss": self.last_loss, "seconds": round(seconds, 2), "processes": self.dist.world,
            "device": str(self.dist.device), "precision": self.config.precision, "stage_results": state.finished,
        }
        if self.dist.main:
            summary["evaluations"] = self._evaluations()
            best = BestCheckpoint(self.out).record()
            if best is not None:
                summary["best"] = best
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
