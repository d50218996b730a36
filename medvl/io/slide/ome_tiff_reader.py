"""The OME-TIFF backend (tifffile): pyramids in SubIFDs, several images (series) in one file, µm/px from the OME-XML.

An OME-TIFF may hold several images: the slide, a label, a macro, or several scanned regions. The slide is the RGB
(uint8, 3 or 4 samples) series with the most pixels; every other series is an associated image, named by its OME
``Name`` when that is one of ``label``, ``macro``, ``overview``, ``thumbnail`` (else ``series-N``: free-text names
are never shown). Pyramid levels are the series' levels (SubIFDs or further pages). Tiles are read through
tifffile's zarr view of each level, so only the tiles a window touches are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader, float_or_none
from medvl.io.slide.pixels import window_hwc

__all__ = ["OmeTiffBackend", "ome_physical_size_um"]

#: OME length units -> micrometres
_UNITS_UM = {"µm": 1.0, "um": 1.0, "micrometer": 1.0, "micron": 1.0, "nm": 1e-3, "nanometer": 1e-3,
             "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4, "angstrom": 1e-4}
_ASSOCIATED = ("label", "macro", "overview", "thumbnail")


def _images(ome_xml: str) -> list[dict]:
    from tifffile import xml2dict

    images = xml2dict(ome_xml).get("OME", {}).get("Image", [])
    return images if isinstance(images, list) else [images]


def ome_physical_size_um(image: dict) -> float | None:
    """The level-0 pixel size (µm) of one OME ``Image`` (mean of X and Y when both are given)."""
    pixels = image.get("Pixels", {})
    sizes = []
    for axis in ("X", "Y"):
        value = float_or_none(pixels.get(f"PhysicalSize{axis}"))
        unit = str(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is not None and unit in _UNITS_UM:
            sizes.append(value * _UNITS_UM[unit])
    return sum(sizes) / len(sizes) if sizes else None


def _is_rgb(series) -> bool:
    axes, shape = series.axes, series.shape
    samples = dict(zip(axes, shape, strict=True))
    return series.dtype == np.uint8 and (samples.get("S") in (3, 4) or samples.get("C") in (3, 4))


class _OmeTiffReader(SlideReader):
    def __init__(self, path: Path):
        import tifffile
        import zarr

        self._tf = tifffile.TiffFile(path)
        if not self._tf.is_ome:
            raise ValueError("not an OME-TIFF (no OME-XML in the first page)")
        series = list(self._tf.series)
        rgb = [i for i, s in enumerate(series) if _is_rgb(s)]
        main = max(rgb or range(len(series)), key=lambda i: _area(series[i]))
        self.series_index = main
        s = series[main]
        self._axes = s.axes
        self._levels = [zarr.open(s.aszarr(level=i), mode="r") for i in range(len(s.levels))]
        dims = tuple((_dim(lv, "X"), _dim(lv, "Y")) for lv in s.levels)
        images = _images(self._tf.ome_metadata or "")
        image = images[main] if main < len(images) else {}
        self._associated = {self._assoc_name(i, images): i for i in range(len(series)) if i != main}
        self.meta = SlideMeta(
            backend="ome-tiff", vendor="ome", level_dimensions=dims,
            level_downsamples=tuple(dims[0][0] / d[0] for d in dims), header_mpp=ome_physical_size_um(image),
            objective_power=None, associated=tuple(sorted(self._associated)),
            channels=3 if _is_rgb(s) else int(np.prod([n for a, n in zip(s.axes, s.shape, strict=True) if a in "CS"])),
            channel_note=None if _is_rgb(s) else f"{s.dtype} series with axes {s.axes} and shape {s.shape}",
        )

    @staticmethod
    def _assoc_name(index: int, images: list[dict]) -> str:
        name = str(images[index].get("Name", "")).strip().lower() if index < len(images) else ""
        return name if name in _ASSOCIATED else f"series-{index}"

    def read_region(self, xy, level, size):
        ds = self.meta.level_downsamples[level]
        x, y = int(round(xy[0] / ds)), int(round(xy[1] / ds))
        return window_hwc(self._levels[level], self._axes, x, y, int(size[0]), int(size[1]))

    def associated_image(self, name):
        series = self._tf.series[self._associated[name]]
        data = series.asarray()
        return window_hwc(data, series.axes, 0, 0, _dim(series, "X"), _dim(series, "Y"))

    def close(self):
        self._tf.close()


def _dim(series_or_level, axis: str) -> int:
    return int(dict(zip(series_or_level.axes, series_or_level.shape, strict=True))[axis])


def _area(series) -> int:
    return _dim(series, "X") * _dim(series, "Y")


class OmeTiffBackend(SlideBackend):
    """OME-TIFF files, recognised by their OME-XML (not by name)."""

    name = "ome-tiff"
    suffixes = (".tif", ".tiff", ".btf", ".tf2", ".tf8")

    def can_read(self, path):
        if path.is_dir() or path.suffix.lower() not in self.suffixes:
            return False
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                return bool(tf.is_ome)
        except Exception:  # noqa: BLE001 - not a TIFF tifffile can parse: the other backends report it
            return False

    def open(self, path):
        return _OmeTiffReader(path)
