"""Tissue detection on the real bundled slide and on drawn scenes with known tissue."""

from __future__ import annotations

import json
import logging

import numpy as np
from PIL import Image

from medvl.io.slide import open_slide
from medvl.pathology.tissue import TissueConfig, detect_tissue, saturation_mask
from tests.pathology.synthetic_slides import he_scene


def test_bundled_slide_tissue_mask_and_qupath_geojson(svs_path, tmp_path):
    with open_slide(svs_path) as s:
        mask, thumb = detect_tissue(s)
    assert 0.2 < mask.tissue_fraction < 0.6  # the CMU-1 crop is roughly one third tissue
    assert mask.mask.shape == thumb.shape[:2]
    # tissue is coloured, background is near-white glass
    assert thumb[mask.mask].std(axis=1).mean() > thumb[~mask.mask].std(axis=1).mean()
    geo = mask.to_geojson()
    assert geo["type"] == "FeatureCollection" and geo["features"]
    feat = geo["features"][0]
    assert feat["properties"]["objectType"] == "annotation"
    assert feat["properties"]["classification"]["name"] == "Tissue"
    rings = feat["geometry"]["coordinates"]
    xs = [p[0] for p in rings[0]]
    ys = [p[1] for p in rings[0]]
    assert rings[0][0] == rings[0][-1]  # closed ring
    assert 0 <= min(xs) and max(xs) <= 2220 and 0 <= min(ys) and max(ys) <= 2967  # level-0 pixels
    mask.save_geojson(tmp_path / "t.geojson")
    assert json.loads((tmp_path / "t.geojson").read_text())["features"]
    mask.save_png(tmp_path / "t.png", thumb)
    assert Image.open(tmp_path / "t.png").size == (thumb.shape[1], thumb.shape[0])


def test_holes_are_kept_as_geojson_holes():
    rgb = he_scene(400, 300)
    mask, _ = saturation_mask(rgb, TissueConfig(), px_area_um2=4.0)  # 2 µm/px: the hole is ~4500 µm² x 4
    assert not mask[150, 180]  # the drawn hole at the centre stays a hole
    assert mask[150, 100]  # tissue beside it
    from medvl.pathology.tissue import mask_to_geojson

    geo = mask_to_geojson(mask, (1.0, 1.0))
    assert len(geo["features"]) == 1 and len(geo["features"][0]["geometry"]["coordinates"]) == 2
    outer, hole = (np.array(r) for r in geo["features"][0]["geometry"]["coordinates"])

    def signed_area(r):
        return float(np.sum(r[:-1, 0] * r[1:, 1] - r[1:, 0] * r[:-1, 1])) / 2

    assert signed_area(outer) > 0 > signed_area(hole)  # RFC 7946 winding: outer counter-clockwise, holes clockwise
    assert abs(signed_area(hole)) < 0.1 * signed_area(outer)


def test_blank_glass_is_a_warning_not_tissue(blank_tiff, caplog):
    with caplog.at_level(logging.WARNING, logger="medvl"), open_slide(blank_tiff) as s:
        mask, _ = detect_tissue(s)
    assert mask.empty
    assert "blank: no tissue detected" in caplog.text
