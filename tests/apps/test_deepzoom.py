"""Deep Zoom pyramids over medvl's slide readers: the layout of openslide.deepzoom, the pixels of the slide."""

import numpy as np
import pytest

from medvl.apps.deepzoom import DeepZoomGeometry, DeepZoomSlide, encode_jpeg
from medvl.errors import InputError
from medvl.io.slide import open_slide
from tests.pathology.synthetic_slides import write_pyramid_tiff


def test_layout_matches_openslide_deepzoom(svs_path):
    """Levels, level sizes and tile counts are those of DeepZoomGenerator (what OpenSeadragon's DZI math expects)."""
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    with openslide.OpenSlide(str(svs_path)) as osr:
        ref = DeepZoomGenerator(osr, tile_size=256, overlap=0, limit_bounds=False)
        geo = DeepZoomGeometry(*osr.dimensions, tile_size=256, overlap=0)
        assert geo.levels == ref.level_count == 13
        assert [geo.level_size(lv) for lv in range(geo.levels)] == [tuple(d) for d in ref.level_dimensions]
        assert [geo.tile_count(lv) for lv in range(geo.levels)] == [tuple(t) for t in ref.level_tiles]
        overlapping = DeepZoomGenerator(osr, tile_size=254, overlap=1, limit_bounds=False)
        geo1 = DeepZoomGeometry(*osr.dimensions, tile_size=254, overlap=1)
        for col, row in [(0, 0), (3, 4), (8, 11)]:  # tiles with overlap on one, two and the clipped sides
            x0, y0, x1, y1 = geo1.tile_box(12, col, row)
            assert (x1 - x0, y1 - y0) == overlapping.get_tile_dimensions(12, (col, row))


def test_full_resolution_tiles_are_the_slide_pixels(svs_path):
    """At the deepest level a tile is exactly the slide's level-0 pixels (and equals DeepZoomGenerator's tile)."""
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    with open_slide(svs_path) as slide, openslide.OpenSlide(str(svs_path)) as osr:
        dz, ref = DeepZoomSlide(slide), DeepZoomGenerator(osr, tile_size=256, overlap=0)
        top = dz.geometry.max_level
        for col, row in [(0, 0), (4, 5), (8, 11)]:  # interior and the clipped corner tile
            tile = dz.tile(top, col, row)
            x0, y0, x1, y1 = dz.geometry.tile_box(top, col, row)
            np.testing.assert_array_equal(tile, slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0)))
            np.testing.assert_array_equal(tile, np.asarray(ref.get_tile(top, (col, row)).convert("RGB")))


def test_coarse_levels_come_from_the_pyramid_and_stay_faithful(tmp_path):
    """Levels matching a pyramid level read it directly; coarser ones are reduced or composed, and all agree with a
    box average of level 0 (no shift, no seam)."""
    from PIL import Image

    path = write_pyramid_tiff(tmp_path / "p.tiff", width=1500, height=1000, mpp=0.5, levels=3, tile=128)
    with open_slide(path) as slide:
        dz = DeepZoomSlide(slide)
        top = dz.geometry.max_level  # 11
        x0, y0, x1, y1 = dz.geometry.tile_box(top - 1, 1, 1)  # scale 2 = pyramid level 1: read directly
        direct = slide.read_region((2 * x0, 2 * y0), 1, (x1 - x0, y1 - y0))
        np.testing.assert_array_equal(dz.tile(top - 1, 1, 1), direct)
        full = slide.read_region((0, 0), 0, slide.dimensions)
        for level in (top - 3, top - 5):  # scale 8 (reduced from level 2) and 32 (composed from finer tiles)
            s = dz.geometry.scale(level)
            w, h = dz.geometry.level_size(level)
            expected = np.asarray(Image.fromarray(full).reduce(s)).astype(float)
            cols, rows = dz.geometry.tile_count(level)
            got = np.concatenate([np.concatenate([dz.tile(level, c, r) for c in range(cols)], axis=1)
                                  for r in range(rows)], axis=0)
            assert got.shape == (h, w, 3)
            assert np.abs(got.astype(float) - expected).mean() < 4.0, level


def test_bad_tiles_are_refused():
    geo = DeepZoomGeometry(1000, 600)
    with pytest.raises(InputError, match="level 11 does not exist"):
        geo.check(11, 0, 0)
    with pytest.raises(InputError, match="outside level 10"):
        geo.check(10, 4, 0)
    with pytest.raises(InputError, match="outside level 10"):
        geo.check(10, -1, 0)
    with pytest.raises(InputError, match="positive size"):
        DeepZoomGeometry(0, 10)


def test_jpeg_tiles_decode_to_the_tile(svs_path):
    from io import BytesIO

    from PIL import Image

    with open_slide(svs_path) as slide:
        tile = DeepZoomSlide(slide).tile(12, 3, 4)
    back = np.asarray(Image.open(BytesIO(encode_jpeg(tile, 90))))
    assert back.shape == tile.shape and np.abs(back.astype(int) - tile).mean() < 8  # JPEG error on H&E texture
