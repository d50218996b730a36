"""Deep Zoom pyramids over medvl's slide readers: the level geometry OpenSeadragon expects, and tile pixels.

A Deep Zoom image of ``W x H`` pixels has ``ceil(log2(max(W, H))) + 1`` levels; level ``L`` shows the slide at
``1 / 2**(max_level - L)`` of full resolution, ``ceil(W / 2**k) x ceil(H / 2**k)`` pixels, cut into square tiles
(``tile_size`` plus ``overlap`` pixels on the sides that have a neighbour). This is the layout of the DZI format and of
``openslide.deepzoom.DeepZoomGenerator``, so OpenSeadragon places every tile where the slide's pixels are.

Pixels come from :meth:`medvl.io.slide.Slide.read_region`: a Deep Zoom level whose scale matches a pyramid level is
read straight from it (on the level's pixel grid, so tiled TIFF/SVS levels go through medvl's direct tile decoder);
a level up to :data:`MAX_DIRECT_RATIO` times coarser than the best pyramid level is read there and box-reduced;
coarser levels are composed from four tiles of the next finer Deep Zoom level (kept in a cache), so a slide without
a pyramid never reads its whole level 0 for one overview tile.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from medvl.errors import InputError

__all__ = ["DeepZoomGeometry", "DeepZoomSlide", "encode_jpeg"]

#: a Deep Zoom level is read from a pyramid level at most this many times finer; coarser ones are composed
MAX_DIRECT_RATIO = 4.0
#: bytes of rendered (decoded RGB) tiles each slide keeps for composing coarser levels
ARRAY_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class DeepZoomGeometry:
    """Level and tile layout of a Deep Zoom pyramid over a ``width x height`` level-0 image."""

    width: int
    height: int
    tile_size: int = 256
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise InputError(None, f"a deep-zoom image needs a positive size, got {self.width}x{self.height}")
        if self.tile_size < 1 or self.overlap < 0:
            raise InputError(None, f"bad tile size {self.tile_size} / overlap {self.overlap}")

    @property
    def max_level(self) -> int:
        """The full-resolution level (``levels - 1``)."""
        return max(0, math.ceil(math.log2(max(self.width, self.height))))

    @property
    def levels(self) -> int:
        return self.max_level + 1

    def scale(self, level: int) -> int:
        """Level-0 pixels per pixel of ``level`` (a power of two)."""
        return 2 ** (self.max_level - level)

    def level_size(self, level: int) -> tuple[int, int]:
        """``(width, height)`` in pixels of ``level``."""
        s = self.scale(level)
        return -(-self.width // s), -(-self.height // s)

    def tile_count(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of tiles at ``level``."""
        w, h = self.level_size(level)
        return -(-w // self.tile_size), -(-h // self.tile_size)

    def check(self, level: int, col: int, row: int) -> None:
        """Raise :class:`InputError` unless ``(level, col, row)`` names a tile of this pyramid."""
        if not 0 <= level <= self.max_level:
            raise InputError(None, f"level {level} does not exist (levels 0..{self.max_level})")
        cols, rows = self.tile_count(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise InputError(None, f"tile {col}_{row} is outside level {level} ({cols} x {rows} tiles)")

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the tile in pixels of ``level`` (overlap included, clipped to the level)."""
        self.check(level, col, row)
        w, h = self.level_size(level)
        ts, ov = self.tile_size, self.overlap
        x0, y0 = col * ts - (ov if col > 0 else 0), row * ts - (ov if row > 0 else 0)
        return x0, y0, min(w, (col + 1) * ts + ov), min(h, (row + 1) * ts + ov)

    def descriptor(self, fmt: str = "jpeg") -> dict[str, Any]:
        """The DZI descriptor as JSON (what ``openslide.deepzoom.DeepZoomGenerator.get_dzi`` writes as XML)."""
        return {"Image": {"Format": fmt, "Overlap": self.overlap, "TileSize": self.tile_size,
                          "Size": {"Width": self.width, "Height": self.height}}}


class _ArrayCache:
    """A small least-recently-used cache of rendered tiles, bounded in bytes (thread-safe)."""

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int]) -> np.ndarray | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[int, int, int], value: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.bytes += value.nbytes
            while self.bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes


class DeepZoomSlide:
    """Deep Zoom tiles of an open :class:`~medvl.io.slide.Slide`.

    Args:
        slide: the slide (any backend of :func:`medvl.io.open_slide`).
        tile_size: tile side in pixels (without overlap).
        overlap: pixels shared with each neighbouring tile.
        array_cache_bytes: bytes of rendered tiles kept to compose coarser levels.
    """

    def __init__(self, slide: Any, tile_size: int = 256, overlap: int = 0,
                 array_cache_bytes: int = ARRAY_CACHE_BYTES):
        self.slide = slide
        w, h = slide.dimensions
        self.geometry = DeepZoomGeometry(int(w), int(h), tile_size, overlap)
        self._arrays = _ArrayCache(array_cache_bytes)

    def _source_level(self, level: int) -> tuple[int, float]:
        """The pyramid level to read a Deep Zoom level from, and its downsample."""
        best = self.slide.best_level_for_downsample(float(self.geometry.scale(level)))
        return best, float(self.slide.level_downsamples[best])

    def tile(self, level: int, col: int, row: int) -> np.ndarray:
        """RGB ``uint8`` pixels of one tile (``[h, w, 3]``, at most ``tile_size + 2 * overlap`` a side)."""
        box = self.geometry.tile_box(level, col, row)
        cached = self._arrays.get((level, col, row))
        if cached is not None:
            return cached
        _, ds = self._source_level(level)
        ratio = self.geometry.scale(level) / ds
        out = self._read(level, box) if ratio <= MAX_DIRECT_RATIO else self._compose(level, box)
        self._arrays.put((level, col, row), out)
        return out

    def _read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """The tile read from the best pyramid level, reduced to the Deep Zoom level's size."""
        from PIL import Image

        x0, y0, x1, y1 = box
        s = self.geometry.scale(level)
        src, ds = self._source_level(level)
        w0, h0 = self.slide.dimensions
        # level-0 box of the tile, clipped to the slide (the last level pixel may reach past it)
        lx0, ly0, lx1, ly1 = x0 * s, y0 * s, min(w0, x1 * s), min(h0, y1 * s)
        sw, sh = self.slide.level_dimensions[src]
        # on the source level's pixel grid: reads of tiled levels start on whole pixels (direct tile decoding)
        sx0, sy0 = int(lx0 // ds), int(ly0 // ds)
        rw = max(1, min(sw - sx0, math.ceil(lx1 / ds) - sx0))
        rh = max(1, min(sh - sy0, math.ceil(ly1 / ds) - sy0))
        region = self.slide.read_region((int(round(sx0 * ds)), int(round(sy0 * ds))), src, (rw, rh))
        size = (x1 - x0, y1 - y0)
        if (rw, rh) == size:
            return region
        img = Image.fromarray(region)
        factor = s / ds
        if float(factor).is_integer() and factor > 1:
            img = img.reduce(int(factor))  # box average over whole source pixels: fast and exact in area
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img)

    def _compose(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """The tile built from the (up to four) tiles of the next finer level that cover it, halved."""
        from PIL import Image

        x0, y0, x1, y1 = box
        finer = level + 1
        fw, fh = self.geometry.level_size(finer)
        fx0, fy0, fx1, fy1 = 2 * x0, 2 * y0, min(fw, 2 * x1), min(fh, 2 * y1)
        canvas = np.full((fy1 - fy0, fx1 - fx0, 3), 255, np.uint8)
        ts = self.geometry.tile_size
        for row in range(fy0 // ts, (fy1 - 1) // ts + 1):
            for col in range(fx0 // ts, (fx1 - 1) // ts + 1):
                part = self.tile(finer, col, row)
                tx0, ty0, _, _ = self.geometry.tile_box(finer, col, row)
                # copy the part of the finer tile inside this tile's footprint
                ax0, ay0 = max(fx0, tx0), max(fy0, ty0)
                ax1, ay1 = min(fx1, tx0 + part.shape[1]), min(fy1, ty0 + part.shape[0])
                canvas[ay0 - fy0:ay1 - fy0, ax0 - fx0:ax1 - fx0] = part[ay0 - ty0:ay1 - ty0, ax0 - tx0:ax1 - tx0]
        img = Image.fromarray(canvas).reduce(2)  # rounds odd sizes up, as the level sizes do
        size = (x1 - x0, y1 - y0)
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img)

    def jpeg(self, level: int, col: int, row: int, quality: int = 80) -> bytes:
        """One tile as JPEG bytes."""
        return encode_jpeg(self.tile(level, col, row), quality)


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """RGB ``uint8`` to baseline JPEG (PIL, libjpeg-turbo)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()
