"""Worker of the text-objective DDP test: the real objective under DDP, on a slice of one global batch."""

from __future__ import annotations

import gc
import os
from typing import ClassVar

import torch
import torch.distributed as dist

GLOBAL_BATCH = 8
TEXTS = [
    "There is no focal consolidation, pleural effusion or pneumothorax.",
    "Invasive ductal carcinoma of the left breast with lymph node metastasis.",
    "The cardiac silhouette and mediastinum are within normal limits.",
    "Findings are consistent with lung cancer in the right upper lobe.",
    "Benign fibroadenoma, no malignant cells seen.",
    "Clear cell renal cell carcinoma, nuclear grade 2.",
    "Stable mild cardiomegaly without pulmonary edema.",
    "Squamous cell carcinoma of the skin, margins free.",
]


class Texts:
    fields: ClassVar[dict[str, str]] = {"text": "text"}

    def texts(self) -> list[str]:
        return TEXTS


def build(objective: str, options: dict):
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig
    from medvl.train.config import StageConfig
    from medvl.train.engine import select_trainable
    from medvl.train.objectives import build_objective

    torch.manual_seed(0)
    model = create_model(ModelConfig.from_dict({
        "towers": {"text": {"name": "hf-text-tiny", "options": {"max_length": 24}, "projection": "none"}},
        "embed_dim": 32}), random_weights=True)
    stage = StageConfig(name="t", objective=objective, inputs=["text"], objective_options=options)
    obj = build_objective(model, stage, Texts(), 0)
    select_trainable(obj, stage)
    obj.eval()  # no dropout: the two runs must see the same function
    obj.before_step(3)
    return obj


def run_case(objective: str, options: dict, rank: int, world: int) -> dict:
    obj = build(objective, options)
    wrapped = torch.nn.parallel.DistributedDataParallel(obj, find_unused_parameters=True) if world > 1 else obj
    n = GLOBAL_BATCH // world
    loss, _ = wrapped({"text": TEXTS[rank * n:(rank + 1) * n]})
    loss.backward()
    value = loss.detach().clone()
    if world > 1:
        dist.all_reduce(value)
        value /= world
    grads = {k: p.grad.detach().clone() for k, p in obj.named_parameters() if p.grad is not None}
    return {"loss": value, "grads": grads}


def worker(rank: int, world: int, init_file: str, out: str, cases: list) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {name: run_case(objective, options, rank, world) for name, objective, options in cases}
    if rank == 0:
        torch.save(results, os.path.join(out, f"world{world}.pt"))
    if world > 1:
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
