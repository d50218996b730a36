"""Worker of the DDP equivalence test: the real objective and DDP, on a slice of one global batch."""

from __future__ import annotations

import gc
import os
from typing import ClassVar

import torch
import torch.distributed as dist

CASES = [("infonce", {}), ("infonce", {"local_loss": True}), ("siglip", {}), ("knowledge_group", {})]
GLOBAL_BATCH = 8


class TabularTextPairs:
    """Clinical rows paired with report sentences, two rows per diagnosis group."""

    fields: ClassVar[dict[str, str]] = {"tabular": "tabular", "text": "text"}
    group_relatives = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)

    def batch(self) -> dict:
        g = torch.Generator().manual_seed(0)
        words = ["renal", "clear", "cell", "carcinoma", "breast", "cancer", "benign", "cyst", "tumor", "lung"]
        texts = [" ".join(words[(i + k) % 10] for k in range(1 + i % 4)) for i in range(GLOBAL_BATCH)]
        return {"tabular": torch.randn(GLOBAL_BATCH, 4, generator=g), "text": texts,
                "group": torch.arange(GLOBAL_BATCH) // 2}


def run_case(name: str, options: dict, rank: int, world: int) -> dict:
    from medvl.losses.registry import LossConfig
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig
    from medvl.train.config import StageConfig
    from medvl.train.engine import select_trainable
    from medvl.train.objectives import ContrastiveObjective

    torch.manual_seed(0)
    tiny = create_model("tiny-multimodal", random_weights=True)
    cfg = ModelConfig.from_dict({**tiny.config.to_dict(), "init_logit_bias": -1.0})
    model = create_model(cfg, random_weights=True)
    stage = StageConfig(inputs=["tabular", "text"], losses=[LossConfig(name, options=options)])
    data = TabularTextPairs()
    objective = ContrastiveObjective(model, stage, data)
    select_trainable(objective, stage)
    objective.eval()  # no dropout: the two runs must see the same function
    wrapped = objective
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    full = data.batch()
    n = GLOBAL_BATCH // world
    local = {k: v[rank * n:(rank + 1) * n] for k, v in full.items()}
    loss, _ = wrapped(local)
    loss.backward()
    value = loss.detach().clone()
    if world > 1:  # local losses average to the global loss
        dist.all_reduce(value)
        value /= world
    grads = {k: p.grad.detach().clone() for k, p in objective.named_parameters() if p.grad is not None}
    return {"loss": value, "grads": grads}


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {f"{name}{'-local' if opts else ''}": run_case(name, opts, rank, world) for name, opts in CASES}
    if rank == 0:
        torch.save(results, os.path.join(out, f"world{world}.pt"))
    if world > 1:
        gc.collect()  # as the engine does: free the DDP wrappers (gloo work, tensors) before the teardown
        dist.barrier()  # as the engine does: a rank tearing gloo down while its peer still works can SIGABRT
        dist.destroy_process_group()
