"""Tiling by physical size: a grid of tiles at a target µm/px, located in level-0 pixels.

A tile of ``size`` pixels at ``mpp`` µm/px covers ``size * mpp / slide_mpp`` level-0 pixels whatever the scanner's
pyramid looks like. It is read from the coarsest pyramid level that is still at least as fine as the target, then
resized to ``size``; so a 40x and a 20x scan give tiles of the same physical field of view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medvl import __version__
from medvl.config import Config
from medvl.errors import ConfigError
from medvl.io.features import TileTable
from medvl.io.slide import Slide
from medvl.log import get_logger
from medvl.pathology.tissue import TissueMask

log = get_logger(__name__)

__all__ = ["TileConfig", "TileGrid", "make_tile_grid"]


@dataclass
class TileConfig(Config):
    """The tile grid.

    Attributes:
        mpp: target resolution of the tiles (µm per pixel); 0.5 is "20x", 0.25 is "40x".
        size: tile side in pixels at ``mpp``.
        overlap: pixels (at ``mpp``) shared by neighbouring tiles.
        min_tissue: keep tiles whose tissue fraction is at least this (0 keeps every tile).
    """

    mpp: float = 0.5
    size: int = 224
    overlap: int = 0
    min_tissue: float = 0.25

    def validate(self) -> None:
        if self.mpp <= 0:
            raise ConfigError(f"TileConfig.mpp must be > 0, got {self.mpp}")
        if self.size < 8:
            raise ConfigError(f"TileConfig.size must be >= 8 pixels, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ConfigError(f"TileConfig.overlap must be in [0, size), got {self.overlap}")
        if not 0 <= self.min_tissue <= 1:
            raise ConfigError(f"TileConfig.min_tissue must be in [0, 1], got {self.min_tissue}")


@dataclass
class TileGrid:
    """Tiles of one slide, in row-major order (top to bottom, left to right).

    Attributes:
        coords: int64 ``[N, 2]`` top-left (x, y) in level-0 pixels.
        level: pyramid level the tiles are read from.
        read_px: tile side in pixels of ``level`` (resized to ``tile_px`` after reading).
        tile_px: tile side delivered to models.
        patch_size_level0: tile side in level-0 pixels.
        mpp: the tiles' µm per pixel.
        slide_mpp: the slide's level-0 µm per pixel and where it came from (``mpp_source``).
        tissue_fraction: float32 ``[N]`` share of each tile on tissue (``None`` without a mask).
    """

    coords: np.ndarray
    level: int
    read_px: int
    tile_px: int
    patch_size_level0: int
    mpp: float
    slide_mpp: float
    mpp_source: str
    slide_path: str
    overlap_px: int = 0
    tissue_fraction: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def attrs(self) -> dict[str, Any]:
        return {
            "mpp": self.mpp,
            "tile_px": self.tile_px,
            "patch_size_level0": self.patch_size_level0,
            "level": self.level,
            "read_px": self.read_px,
            "overlap_px": self.overlap_px,
            "slide_mpp": self.slide_mpp,
            "mpp_source": self.mpp_source,
            "slide_path": self.slide_path,
            "medvl_version": __version__,
        }

    def to_table(self) -> TileTable:
        return TileTable(coords=self.coords, attrs=self.attrs, tissue_fraction=self.tissue_fraction)

    @classmethod
    def from_table(cls, table: TileTable) -> TileGrid:
        """Rebuild a grid from a store written by ``medvl slide tile`` (the extract step reads it back)."""
        a = table.attrs
        missing = [k for k in ("mpp", "tile_px", "patch_size_level0", "level") if a.get(k) is None]
        if missing:
            raise ConfigError(f"tile file lacks the attribute(s) {', '.join(missing)}")
        return cls(
            coords=table.coords, level=int(a["level"]), read_px=int(a.get("read_px") or a["tile_px"]),
            tile_px=int(a["tile_px"]), patch_size_level0=int(a["patch_size_level0"]), mpp=float(a["mpp"]),
            slide_mpp=float(a.get("slide_mpp") or a["mpp"]), mpp_source=str(a.get("mpp_source")),
            slide_path=str(a.get("slide_path")), overlap_px=int(a.get("overlap_px") or 0),
            tissue_fraction=table.tissue_fraction,
        )


def _axis_starts(extent: int, patch: int, stride: float) -> np.ndarray:
    if extent < patch:
        return np.zeros(0, dtype=np.int64)
    # the epsilon keeps a tile that ends exactly at the edge when the stride carries float error (2.4000000000000004)
    n = int(np.floor((extent - patch) / stride + 1e-9)) + 1
    starts = np.round(np.arange(n) * stride).astype(np.int64)
    return starts[starts + patch <= extent]


def make_tile_grid(slide: Slide, config: TileConfig | None = None, tissue: TissueMask | None = None) -> TileGrid:
    """Lay a grid of tiles of ``config.size`` px at ``config.mpp`` over ``slide``.

    Args:
        slide: an open slide; its mpp must be known (header or override), else one error names ``--slide-mpp``.
        config: target resolution, size, overlap and tissue threshold.
        tissue: the tissue mask; tiles below ``config.min_tissue`` are dropped. Without it every tile is kept.
    """
    config = config or TileConfig()
    slide_mpp = slide.require_mpp()
    downsample = config.mpp / slide_mpp
    if downsample < 0.99:
        log.warning("%s: target %.3g µm/px is finer than the scan (%.3g µm/px); tiles are upsampled",
                    slide.slide_id, config.mpp, slide_mpp)
    level = slide.best_level_for_downsample(downsample)
    patch0 = config.size * downsample
    read_px = max(1, int(round(patch0 / slide.level_downsamples[level])))
    stride0 = (config.size - config.overlap) * downsample
    if stride0 < 1:  # steps below one scan pixel round to the same coordinates: the grid would repeat tiles
        raise ConfigError(f"{slide.slide_id}: size {config.size} with overlap {config.overlap} at {config.mpp:g} µm/px "
                          f"steps {stride0:.3g} scan pixels (< 1); lower --overlap or use a coarser --mpp")
    w0, h0 = slide.dimensions
    patch0_int = int(round(patch0))
    xs, ys = _axis_starts(w0, patch0_int, stride0), _axis_starts(h0, patch0_int, stride0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")  # row-major: y outer, x inner
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)
    fraction = None
    if tissue is not None:
        fraction = tissue.fraction_in_boxes(coords, patch0)
        keep = fraction >= config.min_tissue if config.min_tissue > 0 else np.ones(len(coords), bool)
        coords, fraction = coords[keep], fraction[keep]
    return TileGrid(
        coords=coords, level=level, read_px=read_px, tile_px=config.size, patch_size_level0=patch0_int,
        mpp=config.mpp, slide_mpp=slide_mpp, mpp_source=str(slide.mpp_source), slide_path=str(slide.path),
        overlap_px=config.overlap, tissue_fraction=fraction,
    )
