"""Direct region reads from the tiled pages of TIFF-based slides (SVS, generic tiled TIFF), a decoded-tile cache.

OpenSlide composes every ``read_region`` through cairo into premultiplied ARGB, which costs more than decoding the
scanner tiles themselves. For a pyramid level stored as one tiled TIFF page with a codec tifffile/imagecodecs
decode (JPEG, uncompressed, LZW, deflate, zstd, WebP), :class:`TiledLevel` reads the compressed tiles with
``os.pread`` (no shared file position, so any number of threads read at once), decodes each tile once into a
:class:`TileCache` shared by the slide's readers (decoders release the GIL), and copies the requested window out.

It only serves reads it can reproduce exactly: the caller (:mod:`medvl.io.slide.openslide_reader`) maps an OpenSlide
level to a page of the same size, uses it only for levels whose downsample is a whole number and regions that start on
that level's pixel grid, and checks it against OpenSlide on one region before first use. Pixels outside the image are
white, as OpenSlide's transparent ones are after :func:`medvl.io.slide.pixels.rgba_to_rgb`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["TileCache", "TiledLevel", "tiled_levels"]

#: codecs decoded here (TIFF compression tag values): none, LZW, JPEG, Adobe deflate, deflate, zstd, WebP
_CODECS = {1, 5, 7, 8, 32946, 50000, 50001}
#: bytes of decoded tiles a slide keeps by default (one row of 240 px scanner tiles of a 100,000 px wide slide is
#: about 70 MB, so a grid row that spans two scanner rows decodes each tile once)
DEFAULT_CACHE_BYTES = 256 * 2**20


class TileCache:
    """Least-recently-used decoded tiles of one file, bounded in bytes, safe for concurrent readers.

    A tile being decoded by one thread is waited for, not decoded again, by the others.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._tiles: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._pending: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, load) -> np.ndarray:
        while True:
            with self._lock:
                tile = self._tiles.get(key)
                if tile is not None:
                    self._tiles.move_to_end(key)
                    return tile
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    break
            event.wait()  # another thread is decoding it; look again (it may have failed)
        try:
            tile = load()
            with self._lock:
                self._tiles[key] = tile
                self.bytes += tile.nbytes
                while self.bytes > self.max_bytes and len(self._tiles) > 1:
                    _, old = self._tiles.popitem(last=False)
                    self.bytes -= old.nbytes
            return tile
        finally:
            with self._lock:
                del self._pending[key]
            event.set()


class TiledLevel:
    """One tiled, 8-bit, 3-sample TIFF page read window by window."""

    def __init__(self, fd: int, page, level: int, cache: TileCache):
        self._fd, self._level, self._cache = fd, level, cache
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self._cols = -(-self.width // self.tile_w)
        self._offsets, self._counts = page.dataoffsets, page.databytecounts
        self._decode, self._jpegtables = page.decode, page.jpegtables

    @staticmethod
    def supports(page) -> bool:
        return bool(
            page.is_tiled and int(page.compression) in _CODECS and int(page.planarconfig) == 1
            and page.bitspersample == 8 and page.samplesperpixel == 3 and page.imagedepth == 1
            and int(page.photometric) in (2, 6)  # RGB, or YCbCr that the JPEG decoder converts
        )

    def _tile(self, index: int) -> np.ndarray:
        count = int(self._counts[index])
        if count == 0:  # tile never written: background, as OpenSlide paints it
            return np.full((self.tile_h, self.tile_w, 3), 255, dtype=np.uint8)
        data = os.pread(self._fd, count, int(self._offsets[index]))
        if len(data) != count:
            raise OSError(f"tile {index} runs past the end of the file")
        segment, _, _ = self._decode(data, index, jpegtables=self._jpegtables)
        return segment.reshape(self.tile_h, self.tile_w, 3)

    def read_into(self, x: int, y: int, out: np.ndarray) -> None:
        """Window at pixel ``(x, y)`` of this level into ``out`` (uint8 ``[h, w, 3]``); outside the image is white."""
        h, w = out.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.width), min(y + h, self.height)
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            out[...] = 255
        if x1 <= x0 or y1 <= y0:
            return
        tw, th = self.tile_w, self.tile_h
        for row in range(y0 // th, (y1 - 1) // th + 1):
            ty0, ty1 = max(y0, row * th), min(y1, (row + 1) * th)
            for col in range(x0 // tw, (x1 - 1) // tw + 1):
                tx0, tx1 = max(x0, col * tw), min(x1, (col + 1) * tw)
                index = row * self._cols + col
                tile = self._cache.get((self._level, index), lambda i=index: self._tile(i))
                oy, ox = row * th, col * tw
                out[ty0 - y:ty1 - y, tx0 - x:tx1 - x] = tile[ty0 - oy:ty1 - oy, tx0 - ox:tx1 - ox]


def tiled_levels(tiff, fd: int, level_dimensions, cache: TileCache) -> dict[int, TiledLevel]:
    """Pages of an open ``tifffile.TiffFile`` serving the given levels: level index -> :class:`TiledLevel`, for each
    level with exactly one supported page of the same size (levels with none, or an ambiguous match, are left out).
    ``fd`` is the same file opened for reading; ``cache`` belongs to this file alone."""
    by_size: dict[tuple[int, int], list] = {}
    for series in tiff.series:
        for lv in series.levels:
            page = lv.keyframe
            if len(lv.pages) == 1 and TiledLevel.supports(page):
                by_size.setdefault((int(page.imagewidth), int(page.imagelength)), []).append(page)
    out = {}
    for level, dims in enumerate(level_dimensions):
        pages = by_size.get((int(dims[0]), int(dims[1])), [])
        if len(pages) == 1:
            out[level] = TiledLevel(fd, pages[0], level, cache)
    return out
