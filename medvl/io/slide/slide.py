"""The open slide (:class:`Slide`) and :func:`open_slide`, which opens it with the first backend that reads it.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError, reason
from medvl.io.slide.backends import BACKENDS, supported_suffixes
from medvl.io.slide.base import SlideMeta, SlideReader, slide_id_of
from medvl.io.slide.tiff import channels_of, check_tiff_intact

__all__ = ["MPP_OVERRIDE_HINT", "PLAUSIBLE_MPP", "PRIVATE_ASSOCIATED", "Slide", "open_slide"]

#: header mpp values outside this range (µm per pixel) are treated as absent: no light microscope scans coarser than
#: 100 µm/px, and values below 0.02 µm/px are below the diffraction limit by an order of magnitude
PLAUSIBLE_MPP = (0.02, 100.0)
MPP_OVERRIDE_HINT = "--slide-mpp"
#: associated images that often show the patient's name, a barcode or an accession number: the slide label, and the
#: macro photograph of the whole glass with its label (DICOM WSI calls it the overview). They are listed by name,
#: never read, unless the caller opts in (``allow_private=True``, which the apps map to a setting off by default)
PRIVATE_ASSOCIATED = frozenset({"label", "macro", "overview"})


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
    _reader: SlideReader = field(repr=False)
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

    def associated_image(self, name: str, *, allow_private: bool = False) -> np.ndarray:
        """One associated image (RGB uint8).

        Args:
            name: one of :attr:`associated`.
            allow_private: read a label or macro image (:data:`PRIVATE_ASSOCIATED`); they may identify the patient,
                so without this opt-in they are refused.
        """
        if name not in self.associated:
            raise InputError(self.path, f"no associated image '{name}' (has: {', '.join(self.associated) or 'none'})")
        if name in PRIVATE_ASSOCIATED and not allow_private:
            raise InputError(self.path, f"the '{name}' image may show patient identifiers (names, barcodes) and is "
                                        "not read unless you opt in (allow_private=True)")
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
            "associated": list(self.associated),  # names only: their pixels and sizes are not read
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
    check_tiff_intact(path)
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
        channels, note = channels_of(path)
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
