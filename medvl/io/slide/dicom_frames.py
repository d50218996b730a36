"""A single-file DICOM whole-slide image read frame by frame with pydicom: the fallback when wsidicom refuses a file.

Many converters export one pyramid level (or a whole small slide) as one VL Whole Slide Microscopy Image file that
wsidicom will not open on its own (no ``VOLUME`` in ImageType, no DimensionOrganizationType, a lone file of a
series). The pixels are still plain: ``NumberOfFrames`` tiles of ``Rows`` x ``Columns`` covering the
``TotalPixelMatrixColumns`` x ``TotalPixelMatrixRows`` image, placed by the per-frame plane positions when the file
has them, else in row-major order (TILED_FULL). This reader decodes the frames a region needs (through pydicom's
installed decoders, JPEG and JPEG 2000 included) and keeps a few in a small cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, float_or_none

__all__ = ["DicomFramesBackend"]

#: decoded frames kept per open slide
FRAME_CACHE = 64


def _only_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if len(files) != 1:
        raise ValueError(f"the pydicom frame reader takes one file; the folder has {len(files)}")
    return files[0]


def _tile_positions(ds: Any, n_cols: int) -> np.ndarray:
    """0-based (x, y) pixel offset of each frame in the total pixel matrix."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and all("PlanePositionSlideSequence" in f for f in per_frame):
        pos = [f.PlanePositionSlideSequence[0] for f in per_frame]
        return np.array([(int(p.ColumnPositionInTotalImagePixelMatrix) - 1,
                          int(p.RowPositionInTotalImagePixelMatrix) - 1) for p in pos], dtype=np.int64)
    n = int(ds.NumberOfFrames)
    index = np.arange(n)  # TILED_FULL: row-major over the tile grid
    return np.stack([(index % n_cols) * int(ds.Columns), (index // n_cols) * int(ds.Rows)], axis=1)


def _mpp(ds: Any) -> float | None:
    """µm per pixel from the shared PixelSpacing (mm), else from the imaged volume's width."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures and "PixelSpacing" in measures[0]:
            row, col = (float(v) for v in measures[0].PixelSpacing)
            return float_or_none((row + col) / 2 * 1000)
    width = ds.get("ImagedVolumeWidth")
    return float_or_none(float(width) * 1000 / int(ds.TotalPixelMatrixColumns)) if width else None


class _DicomFramesReader(SlideReader):
    def __init__(self, path: Path):
        import pydicom

        self._file = _only_file(path)
        self._ds = pydicom.dcmread(self._file, defer_size=1024)  # the header; frames are read one by one
        ds = self._ds
        if "TotalPixelMatrixColumns" not in ds or "PixelData" not in ds:
            raise ValueError("not a whole-slide image (no TotalPixelMatrixColumns or no pixel data)")
        if int(ds.get("SamplesPerPixel", 1)) != 3:
            raise ValueError(f"{int(ds.get('SamplesPerPixel', 1))} sample(s) per pixel, not an RGB brightfield slide")
        self._size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
        self._tile = (int(ds.Columns), int(ds.Rows))
        n_cols = -(-self._size[0] // self._tile[0])
        self._positions = _tile_positions(ds, n_cols)
        if len(self._positions) != int(ds.get("NumberOfFrames", 1)):
            raise ValueError("the frame positions do not match NumberOfFrames")
        self._index = {(int(x), int(y)): i for i, (x, y) in enumerate(self._positions)}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.meta = SlideMeta(backend="pydicom-frames", vendor=str(ds.get("Manufacturer") or "dicom"),
                              level_dimensions=(self._size,), level_downsamples=(1.0,), header_mpp=_mpp(ds),
                              objective_power=float_or_none(ds.get("ObjectiveLensPower")), associated=())

    def _frame(self, i: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
            # from the file, reading only this frame (memory stays bounded); YBR is converted to RGB
            frame = np.asarray(pixel_array(self._file, index=i), dtype=np.uint8)
            self._cache[i] = frame
            if len(self._cache) > FRAME_CACHE:
                self._cache.popitem(last=False)
            return frame

    def read_region(self, xy, level, size):
        if level != 0:
            raise ValueError(f"level {level}: this file holds one level")
        (x0, y0), (w, h) = xy, size
        out = np.full((h, w, 3), 255, dtype=np.uint8)  # outside the scanned tiles: white background
        tw, th = self._tile
        for ty in range(max(0, y0) // th * th, min(y0 + h, self._size[1]), th):
            for tx in range(max(0, x0) // tw * tw, min(x0 + w, self._size[0]), tw):
                i = self._index.get((tx, ty))
                if i is None:
                    continue  # a sparse file without this tile
                frame = self._frame(i)
                sx, sy = max(x0, tx), max(y0, ty)
                ex, ey = min(x0 + w, tx + tw, self._size[0]), min(y0 + h, ty + th, self._size[1])
                out[sy - y0:ey - y0, sx - x0:ex - x0] = frame[sy - ty:ey - ty, sx - tx:ex - tx]
        return out

    def associated_image(self, name):
        raise KeyError(name)

    def close(self):
        self._cache.clear()


class DicomFramesBackend(SlideBackend):
    """Single-file DICOM WSI through pydicom, tried after wsidicom."""

    name = "pydicom-frames"
    suffixes = (".dcm", ".dicom")

    def can_read(self, path):
        return path.is_dir() or path.suffix.lower() in self.suffixes

    def open(self, path):
        return _DicomFramesReader(path)
