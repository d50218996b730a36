"""What the deep-zoom viewer draws, as JSON-able data in level-0 slide pixels.

The page builds the viewer's state here and hands it to :func:`medvl.apps.components.deepzoom_viewer`: where the
tiles come from (endpoint URL, session token, slide path), the slide's size and physical pixel size, and the
overlays: the tissue mask (a PNG stretched over the whole slide), tile cells (zero-shot heatmap colours and/or tile
boundaries) and annotation outlines. The browser draws all of them on one canvas with the transform that maps
level-0 pixels to the screen at the current zoom, so they stay on the tissue at every zoom level.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from medvl.apps import render

__all__ = ["TileLayer", "heat_legend", "tile_at", "tissue_png", "viewer_args"]

#: colour of the tissue mask and of tile boundaries
TISSUE_RGB = (0, 200, 80)
BOUNDARY_COLOR = "#1e90ff"
HEATMAP_CMAP = "inferno"


def tissue_png(mask: np.ndarray, rgb: tuple[int, int, int] = TISSUE_RGB) -> str:
    """A tissue mask (bool ``[h, w]`` covering the whole slide) as an RGBA PNG data URL: tinted where True."""
    from PIL import Image

    mask = np.asarray(mask, bool)
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (*rgb, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def hex_colors(scores: np.ndarray, vmin: float, vmax: float, cmap: str = HEATMAP_CMAP) -> list[str]:
    """One ``#rrggbb`` per score on the colour map (the same mapping as the PNG heatmaps)."""
    rgba = render.colorize(np.asarray(scores, np.float64), cmap, vmin, vmax)
    return ["#{:02x}{:02x}{:02x}".format(*c[:3]) for c in rgba.reshape(-1, 4)]


def heat_legend(name: str, vmin: float, vmax: float, cmap: str = HEATMAP_CMAP, stops: int = 6) -> dict[str, Any]:
    """The colour bar shown beside the viewer."""
    return {"name": name, "vmin": float(vmin), "vmax": float(vmax),
            "stops": hex_colors(np.linspace(vmin, vmax, stops), vmin, vmax, cmap)}


@dataclass
class TileLayer:
    """Tile cells drawn over the slide.

    Attributes:
        coords: ``[N, 2]`` level-0 top-left corners.
        size: tile side in level-0 pixels.
        scores: one score per tile to colour the heatmap (None: no heatmap).
        vmin, vmax: the score range the colour map spans.
        opacity: heatmap opacity in [0, 1].
        boundaries: outline every tile.
    """

    coords: np.ndarray
    size: float
    scores: np.ndarray | None = None
    vmin: float = 0.0
    vmax: float = 1.0
    opacity: float = 0.5
    boundaries: bool = False
    cmap: str = HEATMAP_CMAP

    def payload(self) -> dict[str, Any] | None:
        if self.scores is None and not self.boundaries:
            return None
        coords = np.asarray(self.coords, np.float64).reshape(-1, 2)
        return {
            "coords": np.round(coords, 2).tolist(),
            "size": float(self.size),
            "colors": None if self.scores is None else hex_colors(self.scores, self.vmin, self.vmax, self.cmap),
            "opacity": float(np.clip(self.opacity, 0.0, 1.0)),
            "boundaries": bool(self.boundaries),
            "boundary_color": BOUNDARY_COLOR,
        }


def tile_at(coords: np.ndarray, size: float, x: float, y: float) -> int | None:
    """Index of the tile whose box holds level-0 point ``(x, y)`` (the first one when tiles overlap), else None."""
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    hit = np.flatnonzero((coords[:, 0] <= x) & (x < coords[:, 0] + size) & (coords[:, 1] <= y)
                         & (y < coords[:, 1] + size))
    return int(hit[0]) if len(hit) else None


def viewer_args(*, tile_url: str, token: str, path: str, dimensions: tuple[int, int], mpp: float | None,
                objective: float | None = None, tissue: str | None = None, tissue_opacity: float = 0.3,
                tiles: TileLayer | None = None, shapes: list[dict[str, Any]] | None = None,
                legend: dict[str, Any] | None = None, selected: tuple[float, float, float, float] | None = None,
                height: int = 620) -> dict[str, Any]:
    """The viewer's full state (JSON-able) for :func:`medvl.apps.components.deepzoom_viewer`.

    Args:
        tile_url: the endpoint's base URL; token: this session's token; path: the slide file.
        dimensions: level-0 ``(width, height)``; mpp: level-0 µm per pixel (None: unknown, no scale bar).
        objective: the scanner objective power, for the magnification shown.
        tissue: :func:`tissue_png` of the mask (None: not drawn).
        tiles: heatmap cells and/or tile boundaries.
        shapes: annotation outlines (:func:`medvl.apps.annotations.shapes_for_viewer`).
        legend: :func:`heat_legend` of the heatmap.
        selected: level-0 box of the selected tile (outlined).
        height: viewer height in pixels.
    """
    return {
        "tile_url": tile_url, "token": token, "path": path,
        "dimensions": [int(dimensions[0]), int(dimensions[1])],
        "mpp": None if mpp is None else float(mpp),
        "objective": None if objective is None else float(objective),
        "tissue": None if tissue is None else {"png": tissue, "opacity": float(np.clip(tissue_opacity, 0, 1))},
        "tiles": None if tiles is None else tiles.payload(),
        "shapes": shapes or None,
        "legend": legend,
        "selected": None if selected is None else [float(v) for v in selected],
        "height": int(height),
    }
