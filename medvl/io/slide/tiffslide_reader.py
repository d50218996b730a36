"""The tiffslide backend: TIFFs OpenSlide refuses, such as non-pyramidal strip TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, float_or_none
from medvl.io.slide.pixels import rgba_to_rgb

__all__ = ["TiffSlideBackend"]


class _TiffSlideReader(SlideReader):
    def __init__(self, path: Path):
        import tiffslide

        self._slide = tiffslide.TiffSlide(str(path))
        props = self._slide.properties
        mpp_x, mpp_y = float_or_none(props.get("tiffslide.mpp-x")), float_or_none(props.get("tiffslide.mpp-y"))
        self.meta = SlideMeta(
            backend="tiffslide",
            vendor=props.get("tiffslide.vendor") or "generic-tiff",
            level_dimensions=tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            header_mpp=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else mpp_x or mpp_y,
            objective_power=float_or_none(props.get("tiffslide.objective-power")),
            associated=tuple(sorted(self._slide.associated_images)),
        )

    def read_region(self, xy, level, size):
        arr = self._slide.read_region(xy, level, size, as_array=True)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        return rgba_to_rgb(arr)

    def associated_image(self, name):
        return rgba_to_rgb(np.asarray(self._slide.associated_images[name]))

    def close(self):
        self._slide.close()


class TiffSlideBackend(SlideBackend):
    name = "tiffslide"
    suffixes = (".svs", ".tif", ".tiff", ".qptiff", ".ndpi", ".scn", ".bif")

    def open(self, path):
        return _TiffSlideReader(path)
