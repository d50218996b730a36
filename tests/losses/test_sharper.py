"""The sharper contrastive losses (UniME, MLCD, ALIP, GA-DMS) against plain loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medvl.errors import ConfigError
from medvl.losses.alip import adaptive_pair_loss
from medvl.losses.contrastive import infonce_loss
from medvl.losses.hardneg import hard_negative_loss
from medvl.losses.mlcd import mlcd_loss
from medvl.losses.registry import LossConfig, LossInputs, build_losses
from medvl.losses.tokenmask import attention_token_mask, token_masked_loss


def _pair(n=8, d=6, seed=0, noise=0.8):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    b = F.normalize(a + noise * torch.randn(n, d, generator=g), dim=-1)
    return a, b


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# ------------------------------------------------------------------------------------------------ UniME
def _unime_direction(x, y, scale, margin, k, beta):
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        sims = [float(x[i] @ y[j]) for j in range(n)]
        pos = sims[i]
        negs = [j for j in range(n) if j != i and (margin is None or sims[j] <= pos + margin)]
        if k:
            negs = sorted(negs, key=lambda j: -sims[j])[:k]
        if beta and negs:
            w = [math.exp(beta * sims[j]) for j in negs]
            w = [v * len(negs) / sum(w) for v in w]
        else:
            w = [1.0] * len(negs)
        denom = [scale * pos] + [scale * sims[j] + math.log(wj) for j, wj in zip(negs, w, strict=True)]
        total += -(scale * pos - _lse(denom))
    return total / n


@pytest.mark.parametrize(("margin", "k", "beta"), [(0.1, 3, 0.0), (None, 0, 0.0), (0.0, 4, 2.0), (0.2, 0, 1.0)])
def test_hard_negative_matches_reference(margin, k, beta):
    a, b = _pair()
    got = hard_negative_loss(a, b, 10.0, margin=margin, k=k, beta=beta)
    ref = (_unime_direction(a, b, 10.0, margin, k, beta) + _unime_direction(b, a, 10.0, margin, k, beta)) / 2
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_hard_negative_without_filters_is_infonce():
    a, b = _pair()
    assert hard_negative_loss(a, b, 7.0, margin=None, k=0).item() == pytest.approx(infonce_loss(a, b, 7.0).item(),
                                                                                    rel=1e-6)


def test_false_negative_filter_removes_a_duplicate_caption():
    """A second copy of row 0's caption is a false negative for image 0: the filter takes it out of the softmax."""
    a, b = _pair(n=6)
    b = torch.cat([b[:5], b[:1]])  # caption 5 duplicates caption 0
    a = torch.cat([a[:5], a[:1]])
    plain = hard_negative_loss(a, b, 20.0, margin=None, k=0)
    filtered = hard_negative_loss(a, b, 20.0, margin=-1e-6, k=0)
    assert filtered < plain


# ------------------------------------------------------------------------------------------------ MLCD
def _mlcd_reference(a, b, hot, scale, margin):
    n, k = hot.shape
    present = [c for c in range(k) if any(hot[i, c] for i in range(n))]

    def centres(emb):
        out = {}
        for c in present:
            s = sum(emb[i] for i in range(n) if hot[i, c])
            out[c] = s / s.norm()
        return out

    def side(x, cs):
        vals = []
        for i in range(n):
            pos = [c for c in present if hot[i, c]]
            if not pos:
                continue
            neg = [c for c in present if not hot[i, c]]
            s = {c: scale * float(x[i] @ cs[c]) for c in present}
            lp = math.log(1 + sum(math.exp(-(s[c] - scale * margin)) for c in pos))
            ln = math.log(1 + sum(math.exp(s[c]) for c in neg))
            vals.append(lp + ln)
        return sum(vals) / len(vals)

    return 0.5 * (side(a, centres(b)) + side(b, centres(a)))


@pytest.mark.parametrize("margin", [0.0, 0.2])
def test_mlcd_matches_reference(margin):
    a, b = _pair(n=7)
    hot = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 1, 0],
                        [0, 0, 0, 0]], dtype=torch.bool)  # concept 3 absent; last row names nothing
    got = mlcd_loss(a, b, hot, 5.0, margin=margin)
    assert got.item() == pytest.approx(_mlcd_reference(a, b, hot, 5.0, margin), rel=1e-5)


def test_mlcd_class_ids_equal_one_hot():
    a, b = _pair(n=6)
    ids = torch.tensor([0, 0, 1, 2, 1, 2])
    assert mlcd_loss(a, b, ids, 5.0).item() == pytest.approx(mlcd_loss(a, b, F.one_hot(ids).bool(), 5.0).item())


def test_mlcd_rewards_every_named_concept():
    """An image whose caption names two concepts: closer to both centres gives a lower loss than to only one."""
    g = torch.Generator().manual_seed(3)
    c0, c1, c2 = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    b = torch.stack([c0, c1, c2, F.normalize(c0 + c1, dim=-1)])
    hot = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    both = torch.stack([c0, c1, c2, F.normalize(c0 + c1, dim=-1)])
    one = torch.stack([c0, c1, c2, c0])
    assert mlcd_loss(both, b, hot, 10.0) < mlcd_loss(one, b, hot, 10.0)


# ------------------------------------------------------------------------------------------------ ALIP
def _ce_row(logits, target):
    return -(logits[target] - _lse(logits))


def _alip_reference(a, b, scale, b2=None, sharp=2.0):
    n = a.shape[0]
    s = [float(a[i] @ b[i]) for i in range(n)]
    m = sum(s) / n
    w = [min(1.0, math.exp(sharp * (v - m))) for v in s]
    if b2 is not None:
        t = [float(b[i] @ b2[i]) for i in range(n)]
        mt = sum(t) / n
        w = [wi * min(1.0, math.exp(sharp * (v - mt))) for wi, v in zip(w, t, strict=True)]
    total = 0.0
    for i in range(n):
        row = [scale * float(a[i] @ b[j]) for j in range(n)]
        col = [scale * float(b[i] @ a[j]) for j in range(n)]
        total += w[i] * (_ce_row(row, i) + _ce_row(col, i)) / 2
    return total / n


def test_adaptive_pair_matches_reference():
    a, b = _pair()
    _, b2 = _pair(seed=5)
    assert adaptive_pair_loss(a, b, 8.0).item() == pytest.approx(_alip_reference(a, b, 8.0), rel=1e-5)
    assert adaptive_pair_loss(a, b, 8.0, b2=b2).item() == pytest.approx(_alip_reference(a, b, 8.0, b2), rel=1e-5)


def test_adaptive_pair_damps_a_mismatched_pair():
    """A pair whose caption is wrong gets a weight < 1, so it moves the loss less than under plain InfoNCE."""
    a, b = _pair(n=8, noise=0.1)
    bad = b.clone()
    bad[0] = -a[0]
    plain_delta = infonce_loss(a, bad, 10.0) - infonce_loss(a, b, 10.0)
    alip_delta = adaptive_pair_loss(a, bad, 10.0) - adaptive_pair_loss(a, b, 10.0)
    assert alip_delta < plain_delta


# ------------------------------------------------------------------------------------------------ GA-DMS
def test_attention_mask_drops_the_least_attended_tokens():
    query = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    tokens = F.normalize(torch.tensor([[[1.0, 0.1, 0], [0, 1, 0], [0.9, 0, 0.4], [0.1, 0.2, 1], [1, 0, 0]]]), dim=-1)
    mask = torch.tensor([[True, True, True, True, False]])  # the last token is padding (and best aligned)
    keep = attention_token_mask(tokens, mask, query, 0.5)
    assert keep.tolist() == [[True, False, True, False, False]]


def test_token_mask_matches_reference():
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    tokens = F.normalize(torch.randn(4, 7, 6, generator=g), dim=-1)
    lengths = [7, 5, 3, 1]
    mask = torch.tensor([[t < n for t in range(7)] for n in lengths])
    pooled = []
    for i, n in enumerate(lengths):
        scores = sorted(range(n), key=lambda t: float(tokens[i, t] @ a[i]))
        drop = min(int(n * 0.4), n - 1)
        kept = [t for t in range(n) if t not in scores[:drop]]
        v = sum(tokens[i, t] for t in kept) / len(kept)
        pooled.append(v / v.norm())
    ref = infonce_loss(a, torch.stack(pooled), 6.0)
    assert token_masked_loss(a, tokens, mask, 6.0, mask_ratio=0.4).item() == pytest.approx(ref.item(), rel=1e-5)
    # no masking: the mean-pooled caption
    full = F.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert token_masked_loss(a, tokens, mask, 6.0, mask_ratio=0.0).item() == pytest.approx(
        infonce_loss(a, full, 6.0).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------ registry
def test_new_losses_through_the_registry():
    a, b = _pair(n=6)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    tokens = F.normalize(torch.randn(6, 4, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    inputs = LossInputs(a=a, b=b, logit_scale=torch.tensor(10.0), groups=groups, tokens_b=tokens,
                        mask_b=torch.ones(6, 4, dtype=torch.bool))
    terms = build_losses([LossConfig("hard_negative", options={"k": 2}), LossConfig("mlcd"),
                          LossConfig("adaptive_pair"), LossConfig("token_mask", options={"mask_ratio": 0.25})])
    values = {t.name: t(inputs).item() for t in terms}
    assert values["hard_negative"] == pytest.approx(hard_negative_loss(a, b, 10.0, k=2).item())
    assert values["mlcd"] == pytest.approx(mlcd_loss(a, b, groups, 10.0).item())  # groups stand in for labels
    assert all(math.isfinite(v) and v > 0 for v in values.values())


def test_new_losses_refuse_bad_options_and_missing_fields():
    a, b = _pair(n=4)
    with pytest.raises(ConfigError, match="mask_ratio"):
        build_losses([LossConfig("token_mask", options={"mask_ratio": 1.0})])[0](
            LossInputs(a=a, b=b, logit_scale=torch.tensor(1.0), tokens_b=torch.zeros(4, 2, 6)))
    with pytest.raises(ConfigError, match="needs 'tokens_b'"):
        build_losses([LossConfig("token_mask")])[0](LossInputs(a=a, b=b, logit_scale=torch.tensor(1.0)))
    with pytest.raises(ConfigError, match="concept labels"):
        build_losses([LossConfig("mlcd")])[0](LossInputs(a=a, b=b, logit_scale=torch.tensor(1.0)))
    with pytest.raises(ConfigError, match="unknown option 'topk'"):
        build_losses([LossConfig("hard_negative", options={"topk": 3})])


# ------------------------------------------------------------------------------------------------ SupReMix
def _supremix_reference(z, y, scale, valid, delta, mix):
    n = len(y)
    z = [v / v.norm() for v in z]
    total, count = 0.0, 0
    for i in range(n):
        if not valid[i]:
            continue
        others = [j for j in range(n) if j != i and valid[j]]
        pos = [z[j] for j in others if abs(y[j] - y[i]) <= delta]
        neg_ids = [j for j in others if abs(y[j] - y[i]) > delta]
        below = [j for j in others if y[j] < y[i] - delta]
        above = [j for j in others if y[j] > y[i] + delta]
        if below and above:
            j, k = max(below, key=lambda t: y[t]), min(above, key=lambda t: y[t])
            lam = (y[k] - y[i]) / (y[k] - y[j])
            m = lam * z[j] + (1 - lam) * z[k]
            pos.append(m / m.norm())
        if not pos or not neg_ids:
            continue
        negs = [z[j] for j in neg_ids]
        negs += [(mix * z[i] + (1 - mix) * z[j]) / (mix * z[i] + (1 - mix) * z[j]).norm() for j in neg_ids]
        s_neg = [scale * float(v @ z[i]) for v in negs]
        terms = [-(scale * float(p @ z[i]) - _lse([scale * float(p @ z[i]), *s_neg])) for p in pos]
        total += sum(terms) / len(terms)
        count += 1
    return total / count


def test_supremix_matches_reference():
    from medvl.losses.supremix import supremix_loss

    g = torch.Generator().manual_seed(4)
    z = torch.randn(9, 5, generator=g)
    y = torch.tensor([1.0, 1.1, 2.0, 3.5, 3.6, 5.0, 7.0, 7.05, 9.0])
    valid = torch.tensor([True] * 7 + [False, True])  # row 7 is censored
    got = supremix_loss(z, y, 5.0, valid, delta=0.2, mix=0.6)
    assert got.item() == pytest.approx(_supremix_reference(z, y.tolist(), 5.0, valid.tolist(), 0.2, 0.6), rel=1e-5)


def test_supremix_prefers_embeddings_ordered_like_the_targets():
    from medvl.losses.supremix import supremix_loss

    y = torch.linspace(0, 10, 12)
    ordered = torch.stack([torch.cos(y / 8), torch.sin(y / 8)], dim=1)  # angle grows with the target
    shuffled = ordered[torch.randperm(12, generator=torch.Generator().manual_seed(0))]
    assert supremix_loss(ordered, y, 10.0, delta=1.0) < supremix_loss(shuffled, y, 10.0, delta=1.0)
    term = build_losses([LossConfig("supremix", options={"delta": 1.0})])[0]
    assert term(LossInputs(a=ordered, b=ordered, logit_scale=torch.tensor(10.0), targets=y)).item() == pytest.approx(
        supremix_loss(ordered, y, 10.0, delta=1.0).item())
