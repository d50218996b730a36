"""The DICOM whole-slide backend (wsidicom): a DICOM WSI folder or file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, float_or_none
from medvl.io.slide.pixels import rgba_to_rgb

__all__ = ["DicomBackend"]


class _DicomReader(SlideReader):
    def __init__(self, path: Path):
        from wsidicom import WsiDicom

        self._wsi = WsiDicom.open(path)
        levels = list(self._wsi.levels)
        base = levels[0].size.width
        self._level_numbers = [lv.level for lv in levels]
        mpp = self._wsi.mpp
        self.meta = SlideMeta(
            backend="wsidicom",
            vendor="dicom",
            level_dimensions=tuple((lv.size.width, lv.size.height) for lv in levels),
            level_downsamples=tuple(base / lv.size.width for lv in levels),
            header_mpp=float_or_none((mpp.width + mpp.height) / 2) if mpp is not None else None,
            objective_power=None,
            associated=tuple(n for n, items in (("label", self._wsi.labels), ("overview", self._wsi.overviews))
                             if items),
        )

    def read_region(self, xy, level, size):
        # wsidicom takes the location in pixels of the requested level, not of level 0
        ds = self.meta.level_downsamples[level]
        loc = (int(round(xy[0] / ds)), int(round(xy[1] / ds)))
        img = self._wsi.read_region(loc, self._level_numbers[level], size)
        return rgba_to_rgb(np.asarray(img.convert("RGB") if img.mode not in ("RGB", "RGBA") else img))

    def associated_image(self, name):
        img = self._wsi.read_label() if name == "label" else self._wsi.read_overview()
        return rgba_to_rgb(np.asarray(img.convert("RGB")))

    def close(self):
        self._wsi.close()


class DicomBackend(SlideBackend):
    name = "wsidicom"
    suffixes = (".dcm", ".dicom")

    def can_read(self, path):
        return path.is_dir() or path.suffix.lower() in self.suffixes

    def open(self, path):
        return _DicomReader(path)
