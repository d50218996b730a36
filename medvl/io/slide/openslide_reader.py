"""The OpenSlide backend: vendor formats and tiled TIFF (aligned reads of plain tiled levels: :mod:`medvl.io.tiled`)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import reason
from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, float_or_none
from medvl.io.slide.pixels import argb_to_rgb, rgba_to_rgb
from medvl.io.slide.tiff import is_tiff
from medvl.log import get_logger

log = get_logger(__name__)

__all__ = ["OpenSlideBackend"]


class _OpenSlideReader(SlideReader):
    def __init__(self, path: Path):
        import openslide
        from openslide import lowlevel

        self._slide = openslide.OpenSlide(str(path))
        props = self._slide.properties
        mpp_x = float_or_none(props.get(openslide.PROPERTY_NAME_MPP_X))
        mpp_y = float_or_none(props.get(openslide.PROPERTY_NAME_MPP_Y))
        self.meta = SlideMeta(
            backend="openslide",
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
            level_dimensions=tuple(tuple(d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            header_mpp=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else mpp_x or mpp_y,
            objective_power=float_or_none(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
            associated=tuple(sorted(self._slide.associated_images)),
        )
        # openslide-python's ctypes binding of openslide_read_region (it checks the handle and raises OpenSlideError
        # after a failed read). Calling it with our own buffer skips the PIL image and its two copies; without it
        # (another openslide-python layout, a big-endian host) every read takes the public PIL path.
        self._raw_read = getattr(lowlevel, "_read_region", None) if sys.byteorder == "little" else None
        self._handle = getattr(self._slide, "_osr", None)
        self._scratch = threading.local()  # one ARGB buffer per reading thread, reused across tiles
        self._path = path
        self._tiled: dict[int, Any] | None = None  # level -> medvl.io.tiled.TiledLevel, opened on first read
        self._tiled_fd: int | None = None
        self._init_lock = threading.Lock()

    def read_region(self, xy, level, size):
        img = self._slide.read_region(xy, level, size)
        if img.getchannel("A").getextrema()[0] < 255:  # some pixel lies outside the scanned area
            return rgba_to_rgb(np.asarray(img))
        return np.asarray(img.convert("RGB"))  # C conversion: contiguous RGB without a strided numpy copy

    def read_region_into(self, xy, level, size, out):
        tiled = self._tiled if self._tiled is not None else self._open_tiled()
        fast = tiled.get(level)
        if fast is not None:
            ds = int(self.meta.level_downsamples[level])
            if xy[0] % ds == 0 and xy[1] % ds == 0:  # starts on the level's pixel grid: no resampling involved
                fast.read_into(xy[0] // ds, xy[1] // ds, out)
                return
        self._read_openslide_into(xy, level, size, out)

    def _read_openslide_into(self, xy, level, size, out):
        w, h = size
        if self._raw_read is None or self._handle is None or w * h == 0:
            out[...] = self.read_region(xy, level, size)
            return
        argb = getattr(self._scratch, "buf", None)
        if argb is None or argb.size < w * h:
            argb = self._scratch.buf = np.empty(w * h, dtype=np.uint32)
        argb = argb[: w * h]
        import ctypes

        self._raw_read(self._handle, argb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), xy[0], xy[1], level, w, h)
        argb_to_rgb(argb, out)

    def _open_tiled(self) -> dict[int, Any]:
        """Levels served by :mod:`medvl.io.tiled` (tiled TIFF pages of the same size, whole-number downsample, same
        pixels as OpenSlide on a check region across four scanner tiles); empty for other formats."""
        with self._init_lock:
            if self._tiled is not None:
                return self._tiled
            levels: dict[int, Any] = {}
            try:
                levels = self._tiled_candidates()
                for level in list(levels):
                    if not self._agrees(level, levels[level]):
                        log.debug("level %d: direct tile decoding differs from OpenSlide; using OpenSlide", level)
                        del levels[level]
            except Exception as exc:  # anything tifffile cannot follow is read through OpenSlide, as before
                log.debug("direct tile decoding unavailable (%s)", reason(exc))
                levels = {}
            self._tiled = levels
            return levels

    def _tiled_candidates(self) -> dict[int, Any]:
        path = self._path
        if not is_tiff(path):
            return {}
        import tifffile

        from medvl.io.tiled import TileCache, tiled_levels

        self._tiled_fd = os.open(path, os.O_RDONLY)
        with tifffile.TiffFile(path) as tf:
            levels = tiled_levels(tf, self._tiled_fd, self.meta.level_dimensions, TileCache())
        return {lv: t for lv, t in levels.items() if float(self.meta.level_downsamples[lv]).is_integer()}

    def _agrees(self, level: int, tiled) -> bool:
        ds = int(self.meta.level_downsamples[level])
        w, h = min(64, tiled.width), min(64, tiled.height)
        x = max(0, min(tiled.width - w, tiled.tile_w * (tiled.width // tiled.tile_w // 2) - w // 2))
        y = max(0, min(tiled.height - h, tiled.tile_h * (tiled.height // tiled.tile_h // 2) - h // 2))
        mine, theirs = np.empty((h, w, 3), np.uint8), np.empty((h, w, 3), np.uint8)
        tiled.read_into(x, y, mine)
        self._read_openslide_into((x * ds, y * ds), level, (w, h), theirs)
        return bool(np.array_equal(mine, theirs))

    def associated_image(self, name):
        return rgba_to_rgb(np.asarray(self._slide.associated_images[name]))

    def close(self):
        self._slide.close()
        self._tiled = {}
        if self._tiled_fd is not None:
            os.close(self._tiled_fd)
            self._tiled_fd = None


class OpenSlideBackend(SlideBackend):
    name = "openslide"
    thread_safe = True  # libopenslide locks internally; its tile cache is shared by all readers of a handle
    suffixes = (".svs", ".tif", ".tiff", ".qptiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")

    def open(self, path):
        import openslide

        if openslide.OpenSlide.detect_format(str(path)) is None:
            raise ValueError("OpenSlide does not recognise the format")
        return _OpenSlideReader(path)
