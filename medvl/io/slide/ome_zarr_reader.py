"""The OME-Zarr (NGFF) backend (zarr): multiscale images v0.4 (zarr v2) and v0.5 (zarr v3).

A folder is an OME-Zarr image when its group attributes hold ``multiscales`` (v0.4) or ``ome.multiscales`` (v0.5);
a ``bioformats2raw.layout`` folder holds several images as subgroups ``0``, ``1``, ...: the slide is the RGB (uint8,
3 channels) image with the most pixels, the others are associated images ``series-N``. Levels are the multiscale's
datasets in order; the level-0 µm/px comes from its ``scale`` transformation (with the global one, if any) and the
axes' units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.io.slide.base import SlideBackend, SlideMeta, SlideReader
from medvl.io.slide.pixels import window_hwc

__all__ = ["OmeZarrBackend", "ngff_multiscales"]

_UNITS_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6,
             "angstrom": 1e-4}


def ngff_multiscales(attrs: dict[str, Any]) -> list[dict] | None:
    """The ``multiscales`` list of a group's attributes (v0.4 at the top, v0.5 under ``ome``), else ``None``."""
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    found = ome.get("multiscales", attrs.get("multiscales"))
    return found if isinstance(found, list) and found else None


def _scale(transforms: list[dict] | None, n: int) -> np.ndarray:
    scale = np.ones(n)
    for t in transforms or []:
        if t.get("type") == "scale":
            scale = scale * np.asarray(t["scale"], dtype=np.float64)
    return scale


class _Image:
    """One NGFF multiscale image: its axes, level arrays and level-0 µm/px."""

    def __init__(self, group):
        ms = ngff_multiscales(dict(group.attrs))[0]
        axes = ms["axes"]
        self.names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
        self.axes = "".join("S" if n == "c" else n.upper() for n in self.names)
        self.levels = [group[d["path"]] for d in ms["datasets"]]
        top = _scale(ms.get("coordinateTransformations"), len(axes))
        scale0 = _scale(ms["datasets"][0].get("coordinateTransformations"), len(axes)) * top
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
        sizes = [scale0[i] * _UNITS_UM[units[i]] for i, n in enumerate(self.names)
                 if n in ("x", "y") and units[i] in _UNITS_UM]
        self.mpp = float(np.mean(sizes)) if sizes else None
        self.shape = dict(zip(self.names, self.levels[0].shape, strict=True))

    @property
    def rgb(self) -> bool:
        return self.levels[0].dtype == np.uint8 and self.shape.get("c") in (3, 4)

    def dims(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(dict(zip(self.names, lv.shape, strict=True))["x"]),
                      int(dict(zip(self.names, lv.shape, strict=True))["y"])) for lv in self.levels)


def _images(root) -> list[_Image]:
    if ngff_multiscales(dict(root.attrs)):
        return [_Image(root)]
    keys = sorted((k for k in root.group_keys() if k.isdigit()), key=int)
    return [_Image(root[k]) for k in keys if ngff_multiscales(dict(root[k].attrs))]


class _OmeZarrReader(SlideReader):
    def __init__(self, path: Path):
        import zarr

        images = _images(zarr.open_group(str(path), mode="r"))
        if not images:
            raise ValueError("no NGFF multiscales image in this folder")
        main = max(range(len(images)), key=lambda i: (images[i].rgb, np.prod(images[i].dims()[0])))
        self._image = images[main]
        self._others = {f"series-{i}": img for i, img in enumerate(images) if i != main}
        dims = self._image.dims()
        img = self._image
        self.meta = SlideMeta(
            backend="ome-zarr", vendor="ome-ngff", level_dimensions=dims,
            level_downsamples=tuple(dims[0][0] / d[0] for d in dims), header_mpp=img.mpp, objective_power=None,
            associated=tuple(sorted(self._others)), channels=int(img.shape.get("c", 1)),
            channel_note=None if img.rgb else f"{img.levels[0].dtype} image with axes {img.names} and shape "
                                              f"{tuple(img.levels[0].shape)}",
        )

    def read_region(self, xy, level, size):
        ds = self.meta.level_downsamples[level]
        x, y = int(round(xy[0] / ds)), int(round(xy[1] / ds))
        return window_hwc(self._image.levels[level], self._image.axes, x, y, int(size[0]), int(size[1]))

    def associated_image(self, name):
        img = self._others[name]
        w, h = img.dims()[-1]
        return window_hwc(img.levels[-1], img.axes, 0, 0, w, h)

    def close(self):
        pass


class OmeZarrBackend(SlideBackend):
    """OME-Zarr folders, recognised by their NGFF metadata (not by name)."""

    name = "ome-zarr"
    suffixes = (".zarr",)

    def can_read(self, path):
        if not path.is_dir():
            return False
        import zarr

        try:
            root = zarr.open_group(str(path), mode="r")
            return bool(ngff_multiscales(dict(root.attrs)) or "bioformats2raw.layout" in root.attrs)
        except Exception:  # noqa: BLE001 - not a zarr group: the other backends (DICOM folders) are tried
            return False

    def open(self, path):
        return _OmeZarrReader(path)
