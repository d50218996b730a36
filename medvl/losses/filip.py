"""FILIP: token-wise late interaction (each token's best match on the other side, averaged) inside InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_with_grad, pad_tokens_to_global_max, rank

__all__ = ["filip_loss", "filip_similarity"]


def _masked_mean_max(sim: torch.Tensor, mask_q: torch.Tensor, mask_k: torch.Tensor) -> torch.Tensor:
    """sim ``[Nq, Nk, Tq, Tk]`` -> ``[Nq, Nk]``: max over key tokens, mean over query tokens (masks respected)."""
    sim = sim.masked_fill(~mask_k[None, :, None, :], float("-inf"))
    best = sim.max(dim=-1).values.masked_fill(~mask_q[:, None, :], 0.0)
    return best.sum(-1) / mask_q.sum(-1, keepdim=True).clamp_min(1)


def filip_similarity(
    ta: torch.Tensor, tb: torch.Tensor, ma: torch.Tensor | None = None, mb: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-wise similarities ``(s_ab [Na, Nb], s_ba [Nb, Na])`` of normalised token sets ``[N, T, D]``."""
    ma = torch.ones(ta.shape[:2], dtype=torch.bool, device=ta.device) if ma is None else ma.bool()
    mb = torch.ones(tb.shape[:2], dtype=torch.bool, device=tb.device) if mb is None else mb.bool()
    sim = torch.einsum("itd,jsd->ijts", ta.float(), tb.float())
    s_ab = _masked_mean_max(sim, ma, mb)
    s_ba = _masked_mean_max(sim.permute(1, 0, 3, 2), mb, ma)
    return s_ab, s_ba


def filip_loss(
    ta: torch.Tensor,
    tb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over FILIP similarities; this process's rows against every process's tokens."""
    n = ta.shape[0]
    mask_a = torch.ones(ta.shape[:2], dtype=torch.bool, device=ta.device) if mask_a is None else mask_a.bool()
    mask_b = torch.ones(tb.shape[:2], dtype=torch.bool, device=tb.device) if mask_b is None else mask_b.bool()
    ga, gma = pad_tokens_to_global_max(ta, mask_a)
    gb, gmb = pad_tokens_to_global_max(tb, mask_b)
    all_a, all_ma = all_gather_with_grad(ga), all_gather_with_grad(gma.float()).bool()
    all_b, all_mb = all_gather_with_grad(gb), all_gather_with_grad(gmb.float()).bool()
    s_ab, _ = filip_similarity(ta, all_b, mask_a, all_mb)
    s_ba, _ = filip_similarity(tb, all_a, mask_b, all_ma)
    labels = torch.arange(n, device=ta.device) + rank() * n
    return (F.cross_entropy(logit_scale * s_ab, labels) + F.cross_entropy(logit_scale * s_ba, labels)) / 2
