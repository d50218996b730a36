"""Heatmap rendering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medvl.io.slide import open_slide
from medvl.pathology.heatmap import render_heatmap, score_canvas


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
