"""Parallel tile loading returns exactly what a plain read_region loop returns, in grid order."""

from __future__ import annotations

import numpy as np
import openslide

from medvl.io.slide import open_slide
from medvl.pathology.loader import TileDataset, iter_tile_batches
from medvl.pathology.tiling import TileConfig, make_tile_grid


def _grid(svs_path):
    with open_slide(svs_path) as s:
        return make_tile_grid(s, TileConfig(mpp=0.5, size=224, min_tissue=0))


def test_threads_match_plain_openslide_loop(svs_path):
    grid = _grid(svs_path)
    ref = openslide.OpenSlide(str(svs_path))
    expected = [np.asarray(ref.read_region((int(x), int(y)), 0, (224, 224)))[..., :3] for x, y in grid.coords[:40]]
    sub = type(grid)(**{**grid.__dict__, "coords": grid.coords[:40], "tissue_fraction": None})
    for workers in (0, 1, 3):
        got = [(start, tiles) for start, tiles in iter_tile_batches(svs_path, sub, batch_size=16, workers=workers)]
        assert [s for s, _ in got] == [0, 16, 32]
        np.testing.assert_array_equal(np.concatenate([t for _, t in got]), np.stack(expected))


def test_resized_tiles_and_dataset(pyramid_tiff):
    with open_slide(pyramid_tiff) as s:
        grid = make_tile_grid(s, TileConfig(mpp=0.75, size=64, min_tissue=0))
    batches = list(iter_tile_batches(pyramid_tiff, grid, batch_size=7, workers=2))
    tiles = np.concatenate([b for _, b in batches])
    assert tiles.shape == (len(grid), 64, 64, 3)
    ds = TileDataset(pyramid_tiff, grid)
    x, i = ds[3]
    assert tuple(x.shape) == (3, 64, 64) and i == 3
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), tiles[3])


def test_resized_tiles_equal_openslide_region_then_resize(svs_path):
    """The resampling path reads through the direct decoder, then resizes: the pixels OpenSlide + PIL give."""
    from PIL import Image

    with open_slide(svs_path) as s:
        grid = make_tile_grid(s, TileConfig(mpp=0.6, size=224, min_tissue=0))
    assert grid.read_px != grid.tile_px
    sub = type(grid)(**{**grid.__dict__, "coords": grid.coords[:12], "tissue_fraction": None})
    ref = openslide.OpenSlide(str(svs_path))
    expected = [np.asarray(Image.fromarray(np.asarray(ref.read_region((int(x), int(y)), grid.level,
                                                                      (grid.read_px, grid.read_px)))[..., :3])
                           .resize((224, 224), Image.Resampling.BILINEAR)) for x, y in sub.coords]
    got = np.concatenate([t for _, t in iter_tile_batches(svs_path, sub, batch_size=5, workers=2)])
    np.testing.assert_array_equal(got, np.stack(expected))
