"""How the ``manifest`` dataset reads one row's file, per manifest modality (a registry).

A reader turns a validated manifest row into the tensor a tower takes, and checks a row before training (the file
decodes, the volume preprocesses). Each declares the dataset ``field`` it fills, the model ``modality`` of that field,
its ``preprocessing`` (saved in the checkpoint, so inference applies the same transform) and its data ``domain``.

- ``image``: PNG / JPEG / TIFF through Pillow, 2-D DICOM through pydicom, then the one image transform
  (:func:`medvl.models.transforms.image_transform`);
- ``ct``: DICOM folders or NIfTI through the ``medvl.radiology`` chain and volume cache
  (:class:`medvl.train.data.ct.CTVolumes`, shared with ``ct-reports``).

Slides are read as tiles or feature bags (:mod:`medvl.train.data.slides`). A reader may also say how many items a
row gives per epoch (``items(row)``: tiles per slide); ``load(row, rng, occurrence, copies)`` reads one of them.
Register another with ``@register_reader(name)`` on ``factory(options) -> reader``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvl.errors import require
from medvl.models.domain import DataDomain
from medvl.models.transforms import ImageTransformConfig, image_transform
from medvl.registry import Registry

__all__ = ["READERS", "CTReader", "ImageReader", "decode_image", "register_reader"]

#: manifest modality -> factory(options of the manifest dataset) -> reader
READERS: Registry[Callable[[Any], Any]] = Registry(
    "manifest reader", builtins=("medvl.train.data.readers", "medvl.train.data.slides"))


def register_reader(modality: str):
    """Register ``factory(options) -> reader`` for the manifest rows of ``modality``."""

    def decorator(factory):
        READERS.add(modality, factory)
        return factory

    return decorator


# ------------------------------------------------------------------------------------------------ 2-D images
def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any integer or float type -> uint8 (8-bit data kept as is; wider ranges scaled min..max)."""
    if pixels.dtype == np.uint8:
        return pixels
    pixels = pixels.astype(np.float64)
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    return np.round(scaled * 255).astype(np.uint8)


def _decode_dicom(path: Path) -> np.ndarray:
    pydicom = require("pydicom", "radiology", "reading DICOM images")
    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        raise ValueError(f"a {pixels.shape[0]}-frame DICOM is a volume, not a 2-D image (use modality ct)")
    slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
    pixels = pixels * slope + intercept if (slope, intercept) != (1.0, 0.0) else pixels
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return _to_uint8(np.asarray(pixels))


def _decode_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I", "F"):
            return _to_uint8(np.asarray(img))
        return np.asarray(img.convert("L" if img.mode in ("L", "LA", "1") else "RGB"))


#: file suffix -> decoder; anything else goes through Pillow
_DECODERS: dict[str, Callable[[Path], np.ndarray]] = {".dcm": _decode_dicom, ".dicom": _decode_dicom}


def decode_image(path: str | Path) -> np.ndarray:
    """A 2-D image file -> uint8 ``[H, W]`` (grayscale) or ``[H, W, 3]`` pixels; raises on anything undecodable."""
    path = Path(path)
    pixels = _DECODERS.get(path.suffix.lower(), _decode_pillow)(path)
    if pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    if pixels.ndim not in (2, 3) or min(pixels.shape[:2]) < 1:
        raise ValueError(f"not a 2-D image (pixel array of shape {tuple(pixels.shape)})")
    return np.ascontiguousarray(pixels)


class ImageReader:
    """2-D image files through the one image transform; random horizontal flips when augmenting."""

    field = "image"
    modality = "image"

    def __init__(self, transform: ImageTransformConfig, domain: DataDomain):
        self.preprocessing = transform
        self.domain = domain

    def check(self, row: Any) -> None:
        """Raise when the row's file does not decode."""
        decode_image(row.path)

    def load(self, row: Any, rng: torch.Generator | None, occurrence: int = 0, copies: int = 1) -> torch.Tensor:
        x = image_transform(decode_image(row.path)[None], self.preprocessing)[0]
        if rng is not None and torch.rand((), generator=rng) < 0.5:
            x = x.flip(-1)
        return x


@register_reader("image")
def _image_reader(opts: Any) -> ImageReader:
    transform = ImageTransformConfig.from_dict(dict(opts.image), source="manifest image")
    return ImageReader(transform, DataDomain(opts.domain or "image", channels=transform.channels))


# ------------------------------------------------------------------------------------------------ CT volumes
class CTReader:
    """CT volumes through the ``medvl.radiology`` chain and cache (the chain is recorded in the checkpoint)."""

    field = "volume"
    modality = "volume"

    def __init__(self, volumes: Any, domain: DataDomain):
        self.volumes = volumes
        self.preprocessing = volumes.config
        self.domain = domain

    def check(self, row: Any) -> None:
        """Raise when the row's volume fails to load or preprocess (a good one lands in the cache)."""
        self.volumes.load(self.volumes.case(row))

    def load(self, row: Any, rng: torch.Generator | None, occurrence: int = 0, copies: int = 1) -> torch.Tensor:
        return self.volumes.load(self.volumes.case(row))


@register_reader("ct")
def _ct_reader(opts: Any) -> CTReader:
    from medvl.train.data.ct import CTVolumes

    cache = opts.resolve(opts.cache) if opts.cache is not None else None
    volumes = CTVolumes(opts.preprocess, cache, allow_non_ct=opts.allow_non_ct,
                        allow_irregular=opts.allow_irregular)
    return CTReader(volumes, DataDomain(opts.domain or "ct", channels="grayscale"))
