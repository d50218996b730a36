"""Heatmaps: per-tile scores painted over the slide thumbnail, with a colour bar, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvl.atomic import atomic_write_bytes
from medvl.errors import InputError
from medvl.io.slide import Slide

__all__ = ["render_heatmap", "score_canvas"]


def score_canvas(coords: np.ndarray, scores: np.ndarray, patch_size_level0: float, scale: tuple[float, float],
                 shape: tuple[int, int]) -> np.ndarray:
    """Average each thumbnail pixel's covering tile scores (overlapping tiles blend); NaN where no tile lies."""
    h, w = shape
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for (x, y), s in zip(np.asarray(coords), np.asarray(scores, np.float64), strict=True):
        x0, y0 = int(x / scale[0]), int(y / scale[1])
        x1 = max(x0 + 1, int(round((x + patch_size_level0) / scale[0])))
        y1 = max(y0 + 1, int(round((y + patch_size_level0) / scale[1])))
        total[y0:y1, x0:x1] += s
        count[y0:y1, x0:x1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def render_heatmap(
    slide: Slide,
    coords: np.ndarray,
    scores: np.ndarray,
    patch_size_level0: float,
    out: str | Path | None = None,
    *,
    max_px: int = 1024,
    cmap: str = "inferno",
    alpha: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "score",
) -> bytes:
    """Render ``scores`` (one per tile at level-0 ``coords``) over the slide's thumbnail.

    Args:
        slide: the slide the tiles come from.
        coords: ``[N, 2]`` top-left corners in level-0 pixels.
        scores: ``[N]`` values (attention, probability, ...).
        patch_size_level0: tile side in level-0 pixels.
        out: PNG path to write atomically (optional).
        max_px: longest side of the thumbnail.
        cmap, alpha, vmin, vmax, label: colour map, overlay opacity, colour range and colour-bar label.

    Returns:
        The PNG bytes.
    """
    import io

    from matplotlib.figure import Figure

    coords = np.asarray(coords).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(coords) != len(scores):
        raise InputError(slide.path, f"{len(scores)} scores for {len(coords)} tiles")
    thumb = slide.thumbnail(max_px)
    scale = (slide.dimensions[0] / thumb.shape[1], slide.dimensions[1] / thumb.shape[0])
    canvas = score_canvas(coords, scores, patch_size_level0, scale, thumb.shape[:2])
    finite = scores[np.isfinite(scores)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-6
    h, w = thumb.shape[:2]
    fig = Figure(figsize=(w / 100 + 1.4, h / 100 + 0.4), dpi=100)
    ax = fig.add_axes((0.02, 0.02, w / (w + 140), 0.96))
    ax.imshow(thumb)
    im = ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, alpha=alpha, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(slide.slide_id, fontsize=8)
    cax = fig.add_axes((w / (w + 140) + 0.04, 0.1, 0.03, 0.8))
    fig.colorbar(im, cax=cax, label=label)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if out is not None:
        atomic_write_bytes(out, data)
    return data
