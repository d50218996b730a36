"""Collectives for contrastive losses: gather features from every process, with or without gradient.

``all_gather_with_grad`` is an autograd function: forward concatenates every process's tensor, backward sums the
incoming gradient over processes and returns this process's slice. It only uses ``all_gather`` and ``all_reduce``,
so it works on every backend (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_no_grad", "all_gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start:start + ctx.batch]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process (same shape on each); gradients flow back to every process."""
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process; only this process's part keeps its gradient (open_clip's default)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def pad_tokens_to_global_max(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[B, T, D]`` tokens (and mask) to the longest T over processes so they can be gathered."""
    if not is_distributed():
        return tokens, mask
    length = torch.tensor([tokens.shape[1]], device=tokens.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    extra = int(length.item()) - tokens.shape[1]
    if extra:
        tokens = torch.nn.functional.pad(tokens, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(mask, (0, extra), value=False)
    return tokens, mask
