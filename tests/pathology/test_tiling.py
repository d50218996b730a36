"""Tiling by physical size: level choice, level-0 coordinates, overlap, tissue filter, mpp discipline."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import ConfigError, InputError
from medvl.io.slide import open_slide
from medvl.pathology.tiling import TileConfig, make_tile_grid
from medvl.pathology.tissue import detect_tissue


def test_grid_on_bundled_slide_is_row_major_and_on_tissue(svs_path):
    with open_slide(svs_path) as s:
        mask, _ = detect_tissue(s)
        grid = make_tile_grid(s, TileConfig(mpp=0.5, size=224, min_tissue=0.5), mask)
    assert grid.level == 0 and grid.patch_size_level0 == 224 and grid.read_px == 224
    assert 20 < len(grid) < 100
    assert (grid.tissue_fraction >= 0.5).all()
    order = np.lexsort((grid.coords[:, 0], grid.coords[:, 1]))
    np.testing.assert_array_equal(order, np.arange(len(grid)))  # sorted by y, then x
    assert (grid.coords[:, 0] + 224 <= 2220).all() and (grid.coords[:, 1] + 224 <= 2967).all()


def test_physical_size_chooses_level_then_resizes(pyramid_tiff):
    with open_slide(pyramid_tiff) as s:  # 0.25 µm/px, levels 1, 2, 4
        g = make_tile_grid(s, TileConfig(mpp=1.0, size=64, min_tissue=0))
        assert (g.level, g.read_px, g.patch_size_level0) == (2, 64, 256)
        assert len(g) == (2048 // 256) * (1536 // 256)
        g = make_tile_grid(s, TileConfig(mpp=0.75, size=64, min_tissue=0))
        assert (g.level, g.read_px, g.patch_size_level0) == (1, 96, 192)  # level 1 (0.5 µm/px), read 96 -> 64
        g = make_tile_grid(s, TileConfig(mpp=1.0, size=64, overlap=32, min_tissue=0))
        assert g.coords[1, 0] - g.coords[0, 0] == 128  # stride (64 - 32) px at 1 µm/px = 128 level-0 px
        assert g.attrs["overlap_px"] == 32 and g.attrs["mpp_source"] == "header"


def test_same_field_of_view_across_scans(pyramid_tiff, strip_tiff):
    with open_slide(pyramid_tiff) as a, open_slide(strip_tiff) as b:
        ga = make_tile_grid(a, TileConfig(mpp=1.0, size=64, min_tissue=0))
        gb = make_tile_grid(b, TileConfig(mpp=1.0, size=64, min_tissue=0))
    assert ga.patch_size_level0 * a.mpp == pytest.approx(gb.patch_size_level0 * b.mpp)  # 64 µm both


def test_implausible_mpp_refused_then_override(levels_tiff):
    with open_slide(levels_tiff) as s, pytest.raises(InputError, match="implausible.*--slide-mpp"):
        make_tile_grid(s, TileConfig(mpp=1.0, size=32, min_tissue=0))
    with open_slide(levels_tiff, mpp=0.5) as s:
        g = make_tile_grid(s, TileConfig(mpp=1.0, size=32, min_tissue=0))
    assert g.level == 1 and g.mpp_source == "override" and len(g) == (300 // 64) * (250 // 64)


def test_config_validation():
    with pytest.raises(ConfigError, match="overlap"):
        TileConfig(size=64, overlap=64)
    with pytest.raises(ConfigError, match="mpp"):
        TileConfig(mpp=0)
