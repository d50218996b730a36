"""Each loss against a plain reference implementation written with loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medvl.losses.contrastive import infonce_loss
from medvl.losses.filip import filip_loss
from medvl.losses.intra import intra_modal_loss
from medvl.losses.registry import LossConfig, LossInputs, build_losses
from medvl.losses.siglip import siglip_loss


def _pair(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1)


def _ce_ref(logits_row, target, smoothing=0.0):
    m = max(logits_row)
    lse = m + math.log(sum(math.exp(v - m) for v in logits_row))
    logp = [v - lse for v in logits_row]
    k = len(logits_row)
    return -sum(((1 - smoothing) * (j == target) + smoothing / k) * logp[j] for j in range(k))


def _infonce_ref(a, b, scale, smoothing=0.0):
    n = a.shape[0]
    sims = [[scale * float(a[i] @ b[j]) for j in range(n)] for i in range(n)]
    l_ab = sum(_ce_ref(sims[i], i, smoothing) for i in range(n)) / n
    l_ba = sum(_ce_ref([sims[j][i] for j in range(n)], i, smoothing) for i in range(n)) / n
    return (l_ab + l_ba) / 2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_infonce_matches_reference(smoothing):
    a, b = _pair()
    got = infonce_loss(a, b, 10.0, label_smoothing=smoothing)
    assert got.item() == pytest.approx(_infonce_ref(a, b, 10.0, smoothing), rel=1e-5)
    # local_loss in one process is the same loss
    assert infonce_loss(a, b, 10.0, label_smoothing=smoothing, local_loss=True).item() == pytest.approx(got.item())


def test_infonce_prefers_matched_pairs():
    a, _ = _pair()
    assert infonce_loss(a, a, 20.0) < infonce_loss(a, a.roll(1, 0), 20.0)


def test_siglip_matches_reference():
    a, b = _pair()
    t, bias = 10.0, -2.0
    n = a.shape[0]
    ref = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            ref += -math.log(1 / (1 + math.exp(-z * (t * float(a[i] @ b[j]) + bias))))
    assert siglip_loss(a, b, t, bias).item() == pytest.approx(ref / n, rel=1e-5)


def test_filip_matches_reference():
    g = torch.Generator().manual_seed(1)
    ta = F.normalize(torch.randn(3, 4, 8, generator=g), dim=-1)
    tb = F.normalize(torch.randn(3, 5, 8, generator=g), dim=-1)
    mb = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    n = 3

    def sim(x, mx, y, my):  # mean over x's real tokens of the best match among y's real tokens
        vals = [max(float(x[t] @ y[s]) for s in range(y.shape[0]) if my[s]) for t in range(x.shape[0]) if mx[t]]
        return sum(vals) / len(vals)

    ma = torch.ones(3, 4, dtype=torch.bool)
    s_ab = [[5.0 * sim(ta[i], ma[i], tb[j], mb[j]) for j in range(n)] for i in range(n)]
    s_ba = [[5.0 * sim(tb[i], mb[i], ta[j], ma[j]) for j in range(n)] for i in range(n)]
    ref = (sum(_ce_ref(s_ab[i], i) for i in range(n)) + sum(_ce_ref(s_ba[i], i) for i in range(n))) / (2 * n)
    assert filip_loss(ta, tb, 5.0, ma, mb).item() == pytest.approx(ref, rel=1e-5)


def test_intra_modal_is_infonce_between_views():
    a, b = _pair()
    assert intra_modal_loss(a, b, 7.0).item() == pytest.approx(_infonce_ref(a, b, 7.0), rel=1e-5)


def test_knowledge_group_loss_through_registry():
    """Same-group rows are positives; relatives (group 0 ~ group 1) are removed from the negatives."""
    a, b = _pair(n=6)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    relatives = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    scale = torch.tensor(10.0)
    (term,) = build_losses([LossConfig("knowledge_group")])
    got = term(LossInputs(a=a, b=b, logit_scale=scale, groups=groups, group_relatives=relatives))

    def direction(x, y):
        total = 0.0
        for i in range(6):
            keep = [j for j in range(6) if groups[j] == groups[i] or not relatives[groups[i], groups[j]]]
            logits = {j: 10.0 * float(x[i] @ y[j]) for j in keep}
            lse = math.log(sum(math.exp(v) for v in logits.values()))
            pos = [j for j in range(6) if groups[j] == groups[i]]
            total += -sum(logits[j] - lse for j in pos) / len(pos)
        return total / 6

    assert got.item() == pytest.approx((direction(a, b) + direction(b, a)) / 2, rel=1e-5)


def test_unknown_loss_and_option_are_clear_errors():
    from medvl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown loss 'clip2'"):
        build_losses([LossConfig("clip2")])
    with pytest.raises(ConfigError, match="unknown option 'temperature'"):
        build_losses([LossConfig("infonce", options={"temperature": 0.1})])


def test_bank_loss_matches_reference_and_masks_relatives():
    from medvl.losses.bank import bank_loss

    q, _ = _pair(n=3, d=8, seed=4)
    bank, _ = _pair(n=5, d=8, seed=5)
    targets = torch.tensor([0, 2, 4])
    relatives = torch.zeros(5, 5, dtype=torch.bool)
    relatives[0, 1] = relatives[1, 0] = relatives[2, 2] = True  # 1 is an ancestor of 0; a group relates to itself
    scale = 10.0
    ref = 0.0
    for i, t in enumerate(targets.tolist()):
        row = [scale * float(q[i] @ bank[j]) for j in range(5) if j == t or not relatives[t, j]]
        kept = [j for j in range(5) if j == t or not relatives[t, j]]
        ref += _ce_ref(row, kept.index(t))
    assert float(bank_loss(q, bank, targets, scale, relatives)) == pytest.approx(ref / 3, rel=1e-5)
    assert float(bank_loss(q, bank, targets, scale)) != pytest.approx(ref / 3, rel=1e-5)
