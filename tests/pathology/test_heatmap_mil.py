"""Heatmap rendering and MIL pooling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from medvl.io.slide import open_slide
from medvl.pathology.heatmap import render_heatmap, score_canvas
from medvl.pathology.mil import AttentionMIL, MeanPool, TopKPool


def test_score_canvas_places_and_blends():
    canvas = score_canvas(np.array([[0, 0], [10, 0]]), np.array([1.0, 3.0]), 20, (10.0, 10.0), (4, 4))
    assert canvas[0, 0] == 1.0 and canvas[0, 1] == 2.0 and canvas[0, 2] == 3.0  # overlap averages
    assert np.isnan(canvas[3, 3])


def test_render_heatmap_png(svs_path, tmp_path):
    coords = np.array([[0, 0], [1000, 1500], [1224, 1500]])
    with open_slide(svs_path) as s:
        png = render_heatmap(s, coords, np.array([0.1, 0.5, 0.9]), 224, tmp_path / "h.png", max_px=400)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] > 300  # thumbnail plus colour bar
    assert (tmp_path / "h.png").read_bytes() == png
    with open_slide(svs_path) as s, pytest.raises(Exception, match="2 scores for 3 tiles"):
        render_heatmap(s, coords, np.array([0.1, 0.2]), 224)


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
