"""MIL pooling over a bag of tile features, and the bag-attention tower that shares its gated attention."""

from __future__ import annotations

import torch

from medvl.models import create_tower
from medvl.models.bag import AttentionMIL, MeanPool, TopKPool, gated_attention_weights


def test_pooling_modules():
    torch.manual_seed(0)
    x = torch.randn(10, 16)
    pooled, w = MeanPool()(x)
    torch.testing.assert_close(pooled, x.mean(0))
    top = TopKPool(16, k=3)
    pooled, w = top(x)
    assert int((w > 0).sum()) == 3 and torch.isclose(w.sum(), torch.tensor(1.0))
    scores = top.score(x).squeeze(-1)
    torch.testing.assert_close(pooled, x[scores.topk(3).indices].mean(0))


def test_abmil_masking_and_training():
    torch.manual_seed(0)
    model = AttentionMIL(16, hidden=8, n_classes=2)
    bags = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    logits, w = model(bags, mask)
    assert logits.shape == (2, 2) and torch.all(w[0, 4:] == 0)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    # padding must not change a bag's output
    alone, _ = model(bags[0, :4])
    torch.testing.assert_close(alone, logits[0])
    # it learns: one informative tile per positive bag
    x = torch.randn(64, 8, 16)
    y = torch.randint(0, 2, (64,))
    x[y == 1, 0, :] += 3.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x)[0].argmax(1) == y).float().mean() > 0.9


def test_bag_attention_tower_pools_with_the_mil_attention():
    torch.manual_seed(0)
    tower = create_tower("bag-attention-tiny", pos_dim=0).eval()
    feats = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        tokens, m = tower.encode_tokens_masked({"features": feats, "mask": mask})
        w = gated_attention_weights(tokens, tower.attn_v, tower.attn_u, tower.attn_w, m)
        out = tower.encode({"features": feats, "mask": mask})
    assert torch.all(w[1, 3:] == 0) and torch.allclose(w.sum(1), torch.ones(2))
    torch.testing.assert_close(out, torch.einsum("bn,bnd->bd", w, tokens))
    empty = tower.encode({"features": feats, "mask": torch.zeros(2, 5, dtype=torch.bool)})
    assert torch.all(empty == 0)  # an all-masked bag pools to zeros, not NaN
