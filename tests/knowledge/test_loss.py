"""Knowledge-group contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.knowledge import knowledge_group_loss


def clip_loss(a, b, scale):
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def test_equals_clip_loss_with_unique_groups_and_no_mask():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    assert torch.allclose(knowledge_group_loss(a, b, list(range(6)), logit_scale=10.0), clip_loss(a, b, 10.0))


def test_same_group_rows_share_the_target_and_string_ids_work():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    groups = ["x", "x", "y", "z"]
    target = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    logits = 15.0 * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()
    soft = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    assert torch.allclose(knowledge_group_loss(a, b, groups, logit_scale=15.0), soft, atol=1e-6)
    assert torch.allclose(knowledge_group_loss(a, b, torch.tensor([3, 3, 1, 2]), logit_scale=15.0), soft, atol=1e-6)


def test_exclude_mask_removes_relatives_from_negatives():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True
    plain = knowledge_group_loss(a, b, [0, 1, 2, 3])
    masked = knowledge_group_loss(a, b, [0, 1, 2, 3], exclude_mask=mask)
    assert masked < plain
    masked.backward()
    assert torch.isfinite(a.grad).all()
    # a fully masked row still has its positive: the loss stays finite
    full = ~torch.eye(4, dtype=torch.bool)
    assert torch.isfinite(knowledge_group_loss(a, b, [0, 1, 2, 3], exclude_mask=full))
