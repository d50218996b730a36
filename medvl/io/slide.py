"""Whole-slide image reading behind one interface, over a table of backends.

:func:`open_slide` picks a backend from :data:`BACKENDS` by file type (OpenSlide for the vendor formats and tiled
TIFF, tiffslide for TIFFs OpenSlide refuses such as non-pyramidal strip TIFFs, wsidicom for DICOM whole-slide images)
and returns a :class:`Slide`: pyramid geometry, physical pixel size (mpp), vendor, objective power, associated images,
``read_region`` and ``thumbnail``.

Physical pixel size is resolved in one place (:meth:`Slide.require_mpp`): an explicit override wins, then the header
value when it is physically plausible; otherwise anything that needs it fails with one error naming ``--slide-mpp``.
Slides that are not RGB brightfield (multiplexed fluorescence) open for inspection but refuse pixel reads, so their
channels are never mis-read as RGB.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medvl.errors import InputError, reason
from medvl.log import get_logger

log = get_logger(__name__)

#: header mpp values outside this range (µm per pixel) are treated as absent: no light microscope scans coarser than
#: 100 µm/px, and values below 0.02 µm/px are below the diffraction limit by an order of magnitude
PLAUSIBLE_MPP = (0.02, 100.0)
MPP_OVERRIDE_HINT = "--slide-mpp"

__all__ = [
    "BACKENDS",
    "PLAUSIBLE_MPP",
    "Slide",
    "SlideBackend",
    "SlideMeta",
    "open_slide",
    "slide_id_of",
    "supported_suffixes",
]


@dataclass(frozen=True)
class SlideMeta:
    """What a backend learns from a slide's header (no pixel data, no patient identifiers)."""

    backend: str
    vendor: str | None
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    header_mpp: float | None
    objective_power: float | None
    associated: tuple[str, ...]
    channels: int = 3
    channel_note: str | None = None


class _Reader(ABC):
    """An open slide handle of one backend."""

    meta: SlideMeta

    @abstractmethod
    def read_region(self, xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 ``[h, w, 3]`` region; ``xy`` in level-0 pixels, ``size`` in pixels of ``level``."""

    def read_region_into(self, xy: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray) -> None:
        """:meth:`read_region` written into ``out`` (uint8 ``[h, w, 3]``); backends override it to skip a copy."""
        out[...] = self.read_region(xy, level, size)

    @abstractmethod
    def associated_image(self, name: str) -> np.ndarray: ...

    @abstractmethod
    def close(self) -> None: ...


class SlideBackend(ABC):
    """One way of reading slides: which files it takes and how to open them."""

    name: ClassVar[str]
    #: whether one open handle may be read from several threads at once (sharing it shares the decoder cache)
    thread_safe: ClassVar[bool] = False
    #: lower-case suffixes this backend is tried for, in :data:`BACKENDS` order
    suffixes: ClassVar[tuple[str, ...]]

    def can_read(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    @abstractmethod
    def open(self, path: Path) -> _Reader:
        """Open ``path`` or raise any exception (the caller reports every backend's reason)."""


# --------------------------------------------------------------------------------------------------- helpers
def _float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def _rgba_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Drop alpha; fully transparent pixels (outside the scanned area) become white background, not black.

    Returns a view when nothing needs changing (the caller copies once, into its batch).
    """
    rgb = arr[..., :3]
    if arr.shape[-1] == 4:
        alpha = arr[..., 3]
        if alpha.min() < 255:
            rgb = rgb.copy()
            rgb[alpha == 0] = 255
    return rgb


def _argb_to_rgb(argb: np.ndarray, out: np.ndarray) -> None:
    """OpenSlide's premultiplied ARGB words (native little-endian uint32, row-major) into RGB uint8 ``out [h, w, 3]``,
    with :func:`_rgba_to_rgb`'s rule for pixels outside the scanned area."""
    h, w = out.shape[:2]
    if argb.min() < 0xFF000000:  # some pixel not opaque: let PIL un-premultiply, as openslide-python does
        from PIL import Image

        rgba = Image.frombuffer("RGBa", (w, h), argb, "raw", "BGRa", 0, 1).convert("RGBA")
        out[...] = _rgba_to_rgb(np.asarray(rgba))
        return
    bgra = argb.view(np.uint8).reshape(h, w, 4)  # little-endian ARGB words are B, G, R, A bytes
    out[..., 0], out[..., 1], out[..., 2] = bgra[..., 2], bgra[..., 1], bgra[..., 0]


def _tiff_channels(path: Path) -> tuple[int, str | None]:
    """Samples per pixel of a TIFF's main image and a note when they are not RGB (read with tifffile)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        axes, shape = series.axes, series.shape
        page = tf.pages[0]
        photometric = getattr(page.photometric, "name", str(page.photometric))
    channels = 1
    for ax, n in zip(axes, shape, strict=False):
        if ax in "CS":
            channels *= int(n)
    if channels == 3 and photometric in ("RGB", "YCBCR"):
        return 3, None
    if channels in (3, 4) and photometric in ("RGB", "YCBCR"):
        return channels, None
    return channels, f"{channels} channel(s), photometric {photometric}, axes {axes}"


# --------------------------------------------------------------------------------------------------- OpenSlide
class _OpenSlideReader(_Reader):
    def __init__(self, path: Path):
        import openslide
        from openslide import lowlevel

        self._slide = openslide.OpenSlide(str(path))
        props = self._slide.properties
        mpp_x = _float_or_none(props.get(openslide.PROPERTY_NAME_MPP_X))
        mpp_y = _float_or_none(props.get(openslide.PROPERTY_NAME_MPP_Y))
        self.meta = SlideMeta(
            backend="openslide",
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
            level_dimensions=tuple(tuple(d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            header_mpp=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else mpp_x or mpp_y,
            objective_power=_float_or_none(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
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
            return _rgba_to_rgb(np.asarray(img))
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
        _argb_to_rgb(argb, out)

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
        if not _is_tiff(path):
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
        return _rgba_to_rgb(np.asarray(self._slide.associated_images[name]))

    def close(self):
        self._slide.close()
        self._tiled = {}
        if self._tiled_fd is not None:
            os.close(self._tiled_fd)
            self._tiled_fd = None


class OpenSlideBackend(SlideBackend):
    name = "openslide"
    thread_safe = True  # libopenslide locks internally; its tile cache is shared by all readers of a handle
    suffixes = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")

    def open(self, path):
        import openslide

        if openslide.OpenSlide.detect_format(str(path)) is None:
            raise ValueError("OpenSlide does not recognise the format")
        return _OpenSlideReader(path)


# --------------------------------------------------------------------------------------------------- tiffslide
class _TiffSlideReader(_Reader):
    def __init__(self, path: Path):
        import tiffslide

        self._slide = tiffslide.TiffSlide(str(path))
        props = self._slide.properties
        mpp_x, mpp_y = _float_or_none(props.get("tiffslide.mpp-x")), _float_or_none(props.get("tiffslide.mpp-y"))
        self.meta = SlideMeta(
            backend="tiffslide",
            vendor=props.get("tiffslide.vendor") or "generic-tiff",
            level_dimensions=tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            header_mpp=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else mpp_x or mpp_y,
            objective_power=_float_or_none(props.get("tiffslide.objective-power")),
            associated=tuple(sorted(self._slide.associated_images)),
        )

    def read_region(self, xy, level, size):
        arr = self._slide.read_region(xy, level, size, as_array=True)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        return _rgba_to_rgb(arr)

    def associated_image(self, name):
        return _rgba_to_rgb(np.asarray(self._slide.associated_images[name]))

    def close(self):
        self._slide.close()


class TiffSlideBackend(SlideBackend):
    name = "tiffslide"
    suffixes = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif")

    def open(self, path):
        return _TiffSlideReader(path)


# --------------------------------------------------------------------------------------------------- DICOM WSI
class _DicomReader(_Reader):
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
            header_mpp=_float_or_none((mpp.width + mpp.height) / 2) if mpp is not None else None,
            objective_power=None,
            associated=tuple(n for n, items in (("label", self._wsi.labels), ("overview", self._wsi.overviews))
                             if items),
        )

    def read_region(self, xy, level, size):
        # wsidicom takes the location in pixels of the requested level, not of level 0
        ds = self.meta.level_downsamples[level]
        loc = (int(round(xy[0] / ds)), int(round(xy[1] / ds)))
        img = self._wsi.read_region(loc, self._level_numbers[level], size)
        return _rgba_to_rgb(np.asarray(img.convert("RGB") if img.mode not in ("RGB", "RGBA") else img))

    def associated_image(self, name):
        img = self._wsi.read_label() if name == "label" else self._wsi.read_overview()
        return _rgba_to_rgb(np.asarray(img.convert("RGB")))

    def close(self):
        self._wsi.close()


class DicomBackend(SlideBackend):
    name = "wsidicom"
    suffixes = (".dcm", ".dicom")

    def can_read(self, path):
        return path.is_dir() or path.suffix.lower() in self.suffixes

    def open(self, path):
        return _DicomReader(path)


#: backends in the order they are tried; a slide opens with the first one that reads it
BACKENDS: tuple[SlideBackend, ...] = (OpenSlideBackend(), TiffSlideBackend(), DicomBackend())


def supported_suffixes() -> list[str]:
    return sorted({s for b in BACKENDS for s in b.suffixes})


def slide_id_of(path: str | Path) -> str:
    """The slide's identifier in output file names: the file name without its slide suffix."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem


# --------------------------------------------------------------------------------------------------- Slide
@dataclass
class Slide:
    """An open whole-slide image.

    Attributes:
        path: the file (or DICOM folder) it was opened from.
        meta: header facts reported by the backend.
        mpp_override: physical pixel size given by the user, which wins over the header.
    """

    path: Path
    meta: SlideMeta
    _reader: _Reader = field(repr=False)
    mpp_override: float | None = None

    # ---- geometry
    @property
    def slide_id(self) -> str:
        return slide_id_of(self.path)

    @property
    def backend(self) -> str:
        return self.meta.backend

    @property
    def vendor(self) -> str | None:
        return self.meta.vendor

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.meta.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.meta.level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self.meta.level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self.meta.level_downsamples

    @property
    def objective_power(self) -> float | None:
        return self.meta.objective_power

    @property
    def associated(self) -> tuple[str, ...]:
        return self.meta.associated

    @property
    def thread_safe(self) -> bool:
        return any(b.name == self.meta.backend and b.thread_safe for b in BACKENDS)

    @property
    def is_rgb(self) -> bool:
        return self.meta.channel_note is None

    # ---- physical pixel size
    @property
    def mpp_problem(self) -> str | None:
        """Why the header's mpp is not usable (``None`` when it is)."""
        mpp = self.meta.header_mpp
        if mpp is None:
            return "the header has no microns-per-pixel value"
        if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
            return f"the header's microns-per-pixel value {mpp:.4g} is physically implausible"
        return None

    @property
    def mpp(self) -> float | None:
        """Level-0 µm per pixel: the override, else the header value when plausible, else ``None``."""
        if self.mpp_override is not None:
            return self.mpp_override
        return None if self.mpp_problem else self.meta.header_mpp

    @property
    def mpp_source(self) -> str | None:
        if self.mpp_override is not None:
            return "override"
        return None if self.mpp_problem else "header"

    def require_mpp(self) -> float:
        """The level-0 mpp, or one clear error naming the ``--slide-mpp`` override."""
        mpp = self.mpp
        if mpp is None:
            raise InputError(
                self.path,
                f"{self.mpp_problem}; tiling by physical size needs it: pass the level-0 pixel size in µm with "
                f"{MPP_OVERRIDE_HINT} (e.g. {MPP_OVERRIDE_HINT} 0.25 for a 40x scan, 0.5 for 20x)",
            )
        return mpp

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (1 % tolerance)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i if ds >= self.level_downsamples[best] else best
        return best

    # ---- pixels
    def _require_rgb(self) -> None:
        if not self.is_rgb:
            raise InputError(
                self.path,
                f"not an RGB brightfield slide ({self.meta.channel_note}); multiplexed fluorescence images are not "
                "read as RGB: export an RGB rendering (or one channel) to tile it",
            )

    def read_region(self, xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 ``[h, w, 3]``; ``xy`` in level-0 pixels, ``size`` = (w, h) in pixels of ``level``."""
        out = np.empty((int(size[1]), int(size[0]), 3), dtype=np.uint8)
        self.read_region_into(xy, level, size, out)
        return out

    def read_region_into(self, xy: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray) -> None:
        """:meth:`read_region` written into ``out`` (uint8 ``[h, w, 3]``, e.g. one slot of a batch), without an
        intermediate array where the backend allows it."""
        self._require_rgb()
        if not 0 <= level < self.level_count:
            raise InputError(self.path, f"level {level} does not exist (the slide has {self.level_count})")
        w, h = int(size[0]), int(size[1])
        if out.shape != (h, w, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8 {(h, w, 3)}, got {out.dtype} {out.shape}")
        try:
            self._reader.read_region_into((int(xy[0]), int(xy[1])), level, (w, h), out)
        except Exception as exc:  # backend-specific decode errors of damaged files
            raise InputError(self.path, f"cannot read pixels at {tuple(xy)} level {level} ({reason(exc)})") from None

    def thumbnail(self, max_px: int = 1024) -> np.ndarray:
        """RGB uint8 image whose longest side is at most ``max_px`` (read band by band: memory stays bounded)."""
        from PIL import Image

        w0, h0 = self.dimensions
        scale = min(1.0, max_px / max(w0, h0))
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        level = self.best_level_for_downsample(max(1.0, 1.0 / scale))
        lw, lh = self.level_dimensions[level]
        ds = self.level_downsamples[level]
        band = 2048
        parts = []
        for y in range(0, lh, band):
            bh = min(band, lh - y)
            region = self.read_region((0, int(round(y * ds))), level, (lw, bh))
            out_h = max(1, round(bh * th / lh))
            parts.append(np.asarray(Image.fromarray(region).resize((tw, out_h), Image.Resampling.BILINEAR)))
        thumb = np.concatenate(parts, axis=0)
        if thumb.shape[0] != th:
            thumb = np.asarray(Image.fromarray(thumb).resize((tw, th), Image.Resampling.BILINEAR))
        return thumb

    def associated_image(self, name: str) -> np.ndarray:
        if name not in self.associated:
            raise InputError(self.path, f"no associated image '{name}' (has: {', '.join(self.associated) or 'none'})")
        return self._reader.associated_image(name)

    def info(self) -> dict[str, Any]:
        """A JSON-able summary (header facts only; no patient identifiers)."""
        return {
            "slide_id": self.slide_id,
            "path": str(self.path),
            "backend": self.backend,
            "vendor": self.vendor,
            "dimensions": list(self.dimensions),
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": [round(d, 4) for d in self.level_downsamples],
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "header_mpp": self.meta.header_mpp,
            "mpp_problem": None if self.mpp_override is not None else self.mpp_problem,
            "objective_power": self.objective_power,
            "associated": list(self.associated),
            "channels": self.meta.channels,
            "rgb": self.is_rgb,
        }

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "slide not found")
    if path.is_dir():
        return
    if path.suffix.lower() not in supported_suffixes():
        raise InputError(
            path, f"unknown slide format '{path.suffix or path.name}' (supported: {', '.join(supported_suffixes())}, "
            "or a DICOM folder)"
        )
    if path.stat().st_size == 0:
        raise InputError(path, "empty file, not a slide")


_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


class _Collect(logging.Handler):
    """Keeps tifffile's warnings (a broken page chain) for the error message instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        self.messages.append(text.split("> ", 1)[1] if text.startswith("<") and "> " in text else text)


def _is_tiff(path: Path) -> bool:
    """Whether ``path`` is a file that starts with a TIFF or BigTIFF signature (SVS, NDPI, tiled TIFF, ...)."""
    if path.is_dir():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def _check_tiff_intact(path: Path) -> None:
    """Refuse a TIFF-based slide (SVS, TIFF, ...) cut short: page chain or tile data past the end of the file.

    The coarse-level probe at open time reads one corner; a copy that stopped mid-transfer often still has that
    corner and would only fail hours into a cohort run.
    """
    if not _is_tiff(path):
        return
    import tifffile

    size, collect, logger = path.stat().st_size, _Collect(), logging.getLogger("tifffile")
    logger.addHandler(collect)
    try:
        with tifffile.TiffFile(path) as tf:
            end = max((int(o) + int(c) for page in tf.pages
                       for o, c in zip(getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ()),
                                       strict=False)), default=0)
    except Exception as exc:  # tifffile's own error types; the message names the file and the reason
        raise InputError(path, f"not a readable slide: truncated or damaged TIFF ({reason(exc)})") from None
    finally:
        logger.removeHandler(collect)
    broken = [m for m in collect.messages if "offset" in m]
    if end > size or broken:
        detail = broken[0] if broken else f"image data runs to byte {end}"
        raise InputError(path, f"not a readable slide: truncated or damaged TIFF ({detail}; the file has {size} bytes)")


def _channels_of(path: Path) -> tuple[int, str | None]:
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 3, None
    try:
        return _tiff_channels(path)
    except Exception:  # not parseable by tifffile: let the backends report the file
        return 3, None


def open_slide(path: str | Path, mpp: float | None = None) -> Slide:
    """Open a whole-slide image with the first backend of :data:`BACKENDS` that reads it.

    Args:
        path: a slide file (SVS, NDPI, MRXS, SCN, tiled or strip TIFF, ...) or a DICOM WSI folder/file.
        mpp: level-0 µm per pixel to use instead of the header value (the ``--slide-mpp`` override).

    Raises:
        InputError: the path is missing, of an unknown format, or no backend can read it (every reason listed).
    """
    path = Path(path)
    _check_path(path)
    _check_tiff_intact(path)
    if mpp is not None and not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        raise InputError(path, f"the mpp override {mpp} is outside the plausible range {PLAUSIBLE_MPP} µm/px")
    reasons = []
    for backend in BACKENDS:
        if not backend.can_read(path):
            continue
        try:
            reader = backend.open(path)
        except Exception as exc:  # each backend raises its own types; collect them all for the message
            reasons.append(f"{backend.name}: {reason(exc)}")
            continue
        channels, note = _channels_of(path)
        if note is not None:
            reader.meta = SlideMeta(**{**reader.meta.__dict__, "channels": channels, "channel_note": note})
        slide = Slide(path=path, meta=reader.meta, _reader=reader, mpp_override=mpp)
        _probe(slide)
        return slide
    raise InputError(path, "not a readable slide (" + "; ".join(reasons) + ")")


def _probe(slide: Slide) -> None:
    """Decode one small region of the coarsest level so damaged files fail at open time, not mid-run."""
    if not slide.is_rgb:
        return
    level = slide.level_count - 1
    w, h = slide.level_dimensions[level]
    try:
        slide.read_region((0, 0), level, (min(w, 64), min(h, 64)))
    except InputError:
        with contextlib.suppress(Exception):
            slide.close()
        raise
