"""The slide backend interface: what a backend learns from a header, an open handle, and the backend itself."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["SlideBackend", "SlideMeta", "SlideReader", "float_or_none", "slide_id_of"]


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


class SlideReader(ABC):
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
    def open(self, path: Path) -> SlideReader:
        """Open ``path`` or raise any exception (the caller reports every backend's reason)."""


def float_or_none(value: Any) -> float | None:
    """A positive finite float from a header value, else ``None``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def slide_id_of(path: str | Path) -> str:
    """The slide's identifier in output file names: the file name without its slide suffix (and without the
    ``.ome`` of OME's double suffixes: ``s1.ome.tiff`` and ``s1.ome.zarr`` are ``s1``)."""
    path = Path(path)
    stem = path.name if path.is_dir() and path.suffix.lower() != ".zarr" else path.stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem
