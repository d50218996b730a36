"""Direct tile decoding (medvl.io.tiled) gives OpenSlide's pixels exactly, or is not used."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openslide
import pytest

from medvl.io.slide import open_slide
from medvl.io.slide.pixels import argb_to_rgb, rgba_to_rgb
from medvl.io.tiled import TileCache, TiledLevel
from tests.pathology.synthetic_slides import write_pyramid_tiff


def _openslide_rgb(path: Path, xy, level, size) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as ref:
        return rgba_to_rgb(np.asarray(ref.read_region(xy, level, size))).copy()


def test_svs_regions_equal_openslide(svs_path):
    rng = np.random.default_rng(0)
    with open_slide(svs_path) as slide:
        assert 0 in slide._reader._open_tiled()  # level 0 of the SVS is decoded directly
        w, h = slide.dimensions
        regions = [((0, 0), (224, 224)), ((w - 100, h - 50), (224, 224)), ((-30, -40), (96, 80)), ((w + 5, 0), (8, 8))]
        regions += [((int(x), int(y)), (int(a), int(b))) for x, y, a, b in zip(
            rng.integers(0, w, 20), rng.integers(0, h, 20), rng.integers(1, 500, 20), rng.integers(1, 500, 20),
            strict=True)]
        for xy, size in regions:
            np.testing.assert_array_equal(slide.read_region(xy, 0, size), _openslide_rgb(svs_path, xy, 0, size),
                                          err_msg=f"{xy} {size}")


@pytest.mark.parametrize(("compression", "width", "height", "direct"), [
    ("zlib", 704, 528, [0, 1, 2]), ("jpeg", 704, 528, [0, 1, 2]), (None, 704, 528, [0, 1, 2]),
    ("zlib", 700, 530, [0, 1]),  # 175 x 132 px at level 2: downsample 4.008, left to OpenSlide's resampling
])
def test_pyramid_levels_equal_openslide(tmp_path, compression, width, height, direct):
    path = tmp_path / "pyr.tiff"
    write_pyramid_tiff(path, width=width, height=height, tile=128)
    if compression != "zlib":  # rewrite level pages with another codec
        import tifffile

        with tifffile.TiffFile(path) as tf:
            pages = [p.asarray() for p in tf.pages]
        with tifffile.TiffWriter(path) as tw:
            for i, img in enumerate(pages):
                tw.write(img, tile=(128, 128), photometric="rgb", compression=compression, subfiletype=int(i > 0),
                         resolution=(4e4 / 2**i, 4e4 / 2**i), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert sorted(slide._reader._open_tiled()) == direct
        for level in range(3):
            ds = int(slide.level_downsamples[level])
            for x, y in [(0, 0), (130 * ds, 60 * ds), (500, 300), (-ds * 3, 0)]:
                got = slide.read_region((x, y), level, (150, 90))
                np.testing.assert_array_equal(got, _openslide_rgb(path, (x, y), level, (150, 90)),
                                              err_msg=f"level {level} at {(x, y)}")


def test_level_that_disagrees_is_read_through_openslide(svs_path, monkeypatch):
    real = TiledLevel.read_into

    def wrong(self, x, y, out):
        real(self, x, y, out)
        out[0, 0] ^= 1  # one pixel off

    monkeypatch.setattr(TiledLevel, "read_into", wrong)
    with open_slide(svs_path) as slide:
        assert slide._reader._open_tiled() == {}
        np.testing.assert_array_equal(slide.read_region((300, 400), 0, (64, 64)),
                                      _openslide_rgb(svs_path, (300, 400), 0, (64, 64)))


def test_cache_decodes_each_tile_once_across_threads_and_stays_bounded():
    cache, calls, lock = TileCache(max_bytes=10 * 1000), [], threading.Lock()

    def load(key):
        with lock:
            calls.append(key)
        return np.zeros(1000, np.uint8)

    barrier = threading.Barrier(4)

    def reader():
        barrier.wait()
        for key in range(8):
            cache.get(("t", key), lambda k=key: load(k))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == list(range(8))
    for key in range(8, 30):
        cache.get(("t", key), lambda k=key: load(k))
    assert cache.bytes <= 10 * 1000


def test_premultiplied_alpha_matches_openslide_python():
    from ctypes import c_uint32

    from openslide import lowlevel

    rng = np.random.default_rng(1)
    alpha = rng.choice([0, 77, 128, 255], size=64 * 48).astype(np.uint32)
    rgb = rng.integers(0, 256, size=(64 * 48, 3)).astype(np.uint32)
    rgb = rgb * alpha[:, None] // 255  # premultiplied, as OpenSlide returns it
    argb = (alpha << 24) | (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    out = np.empty((48, 64, 3), np.uint8)
    argb_to_rgb(argb.astype(np.uint32), out)
    buf = (64 * 48 * c_uint32)(*argb.tolist())
    expected = rgba_to_rgb(np.asarray(lowlevel._load_image(buf, (64, 48))))
    np.testing.assert_array_equal(out, expected)
