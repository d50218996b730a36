"""Slide viewer logic: the region under view, overview and region rendering with overlays, tiles and their scores.

The page keeps only widget state; geometry (which level-0 box a level/position/size choice shows), tile selection,
per-tile zero-shot scores and the images drawn all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.apps import render
from medvl.errors import InputError
from medvl.io.slide import Slide
from medvl.tasks.vectors import l2_normalise

#: slide file suffixes the viewer accepts for uploads (OpenSlide / tiffslide / DICOM)
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".vms", ".svslide", ".dcm")


@dataclass(frozen=True)
class Region:
    """A view of the slide: ``size`` pixels of ``level`` starting at level-0 ``(x, y)``."""

    level: int
    x: int
    y: int
    width: int
    height: int
    downsample: float

    @property
    def box_level0(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in level-0 pixels."""
        return (self.x, self.y, self.x + self.width * self.downsample, self.y + self.height * self.downsample)


def region_at(slide: Slide, level: int, centre: tuple[float, float], size_px: int = 512) -> Region:
    """The region of ``size_px`` (level pixels) centred at ``centre`` (fractions of the slide), kept on the slide."""
    if not 0 <= level < slide.level_count:
        raise InputError(slide.path, f"level {level} does not exist (the slide has {slide.level_count})")
    lw, lh = slide.level_dimensions[level]
    ds = float(slide.level_downsamples[level])
    w, h = min(size_px, lw), min(size_px, lh)
    cx, cy = (float(np.clip(c, 0.0, 1.0)) for c in centre)
    x_l = int(np.clip(round(cx * lw - w / 2), 0, lw - w))
    y_l = int(np.clip(round(cy * lh - h / 2), 0, lh - h))
    return Region(level=level, x=int(round(x_l * ds)), y=int(round(y_l * ds)), width=w, height=h, downsample=ds)


def tiles_in_box(coords: np.ndarray, patch_size_level0: float, box: tuple[float, float, float, float]) -> np.ndarray:
    """Indices of the tiles whose centre lies inside the level-0 box."""
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    cx, cy = coords[:, 0] + patch_size_level0 / 2, coords[:, 1] + patch_size_level0 / 2
    x0, y0, x1, y1 = box
    return np.flatnonzero((cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1))


def score_map(coords: np.ndarray, scores: np.ndarray, patch_size_level0: float, box: tuple[float, float, float, float],
              shape: tuple[int, int]) -> np.ndarray:
    """Tile scores painted on a ``shape`` (h, w) grid covering the level-0 ``box``; NaN where no tile lies."""
    x0, y0, x1, y1 = box
    h, w = shape
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    keep = ((coords[:, 0] + patch_size_level0 > x0) & (coords[:, 0] < x1)
            & (coords[:, 1] + patch_size_level0 > y0) & (coords[:, 1] < y1))
    shifted = coords[keep] - np.array([x0, y0])
    # score_canvas works on non-negative pixel starts: clip tiles that start left/above the box
    start = np.maximum(shifted, 0)
    scale = ((x1 - x0) / w, (y1 - y0) / h)
    canvas = np.full((h, w), np.nan)
    if keep.any():
        canvas = _paint(start, shifted, np.asarray(scores)[keep], patch_size_level0, scale, (h, w))
    return canvas


def _paint(start: np.ndarray, shifted: np.ndarray, scores: np.ndarray, patch: float, scale: tuple[float, float],
           shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    total, count = np.zeros(shape), np.zeros(shape)
    for (sx, sy), (ox, oy), s in zip(start, shifted, scores, strict=True):
        c0, r0 = int(sx / scale[0]), int(sy / scale[1])
        c1 = min(w, max(c0 + 1, int(round((ox + patch) / scale[0]))))
        r1 = min(h, max(r0 + 1, int(round((oy + patch) / scale[1]))))
        total[r0:r1, c0:c1] += s
        count[r0:r1, c0:c1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


@dataclass
class Overlays:
    """What to draw over the pixels."""

    tissue: np.ndarray | None = None          # bool mask covering the whole slide (any resolution)
    coords: np.ndarray | None = None          # tile corners, level 0
    scores: np.ndarray | None = None          # one score per tile in [0, 1]
    patch_size_level0: float = 0.0
    opacity: float = 0.5
    show_tissue: bool = True
    show_heatmap: bool = True
    vmin: float = 0.0
    vmax: float = 1.0


def _apply(rgb: np.ndarray, box: tuple[float, float, float, float], slide_dims: tuple[int, int],
           overlays: Overlays) -> np.ndarray:
    out = rgb
    if overlays.show_tissue and overlays.tissue is not None:
        mh, mw = overlays.tissue.shape
        sx, sy = mw / slide_dims[0], mh / slide_dims[1]
        x0, y0, x1, y1 = box
        crop = overlays.tissue[int(y0 * sy):max(int(y0 * sy) + 1, int(np.ceil(y1 * sy))),
                               int(x0 * sx):max(int(x0 * sx) + 1, int(np.ceil(x1 * sx)))]
        out = render.blend_mask(out, crop, alpha=0.6 * overlays.opacity)
    if overlays.show_heatmap and overlays.scores is not None and overlays.coords is not None:
        canvas = score_map(overlays.coords, overlays.scores, overlays.patch_size_level0, box, out.shape[:2])
        out = render.blend_scores(out, canvas, alpha=overlays.opacity, vmin=overlays.vmin, vmax=overlays.vmax)
    return out


def render_overview(slide: Slide, thumbnail: np.ndarray, overlays: Overlays, region: Region | None) -> np.ndarray:
    """The whole slide (thumbnail) with overlays and the current region outlined."""
    w0, h0 = slide.dimensions
    out = _apply(thumbnail, (0, 0, w0, h0), (w0, h0), overlays)
    if region is not None:
        sx, sy = thumbnail.shape[1] / w0, thumbnail.shape[0] / h0
        x0, y0, x1, y1 = region.box_level0
        out = render.draw_box(out, (x0 * sx, y0 * sy, x1 * sx, y1 * sy))
    return out


def render_region(slide: Slide, region: Region, overlays: Overlays) -> np.ndarray:
    """The region's pixels at its level, with overlays."""
    rgb = slide.read_region((region.x, region.y), region.level, (region.width, region.height))
    return _apply(rgb, region.box_level0, slide.dimensions, overlays)


# ------------------------------------------------------------------------------------------------ tiles
@dataclass
class SlideTiles:
    """A slide's tile grid and joint-space tile embeddings.

    Attributes:
        coords: ``[N, 2]`` level-0 corners.
        patch_size_level0: tile side in level-0 pixels.
        embeddings: ``[N, D]`` L2-normalised joint-space embeddings.
        source: how the embeddings were made (shown to the user).
        warnings: what the user must know about them (the model was trained on another kind of image).
    """

    coords: np.ndarray
    patch_size_level0: float
    embeddings: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)


def tile_grid_for(slide: Slide, features: Path | None = None, mpp: float = 0.5, size: int = 224):
    """The slide's tile grid: from its feature/tile store when there is one, else tissue detection and tiling."""
    from medvl.pathology.tiling import TileConfig, TileGrid, make_tile_grid
    from medvl.pathology.tissue import detect_tissue

    if features is not None and Path(features).is_file():
        from medvl.io.features import FeatureStore

        return TileGrid.from_table(FeatureStore(features).read())
    mask, _ = detect_tissue(slide)
    return make_tile_grid(slide, TileConfig(mpp=mpp, size=size), mask)


def encode_tiles(model: Any, tiles: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Joint-space embeddings of RGB ``uint8`` tiles: the model's image transform (the one ``medvl slide extract``
    applies), its image tower and projection."""
    import torch

    from medvl.models.transforms import image_transform

    transform = model.image_transform()
    out = []
    with torch.inference_mode():
        for start in range(0, len(tiles), batch_size):
            x = image_transform(np.ascontiguousarray(tiles[start:start + batch_size]), transform)
            out.append(model.encode_image(x).float().numpy())
    emb = np.concatenate(out) if out else np.zeros((0, int(model.embed_dim)), np.float32)
    return l2_normalise(emb)


def model_notes(space: Any, kind: str = "slide") -> list[str]:
    """What the pages show beside the model's outputs on ``kind`` inputs (``slide``, ``ultrasound``): that the
    model was trained on another domain (random weights have their own badge, :func:`medvl.apps.catalog.model_badge`).
    """
    from medvl.models.domain import domain_mismatch, input_domain

    model = space.model
    if "image" not in model.modalities:
        return []
    name = (getattr(model, "identity", None) or {}).get("name") or space.source
    message = domain_mismatch(model.domain("image"), input_domain(kind), str(name))
    return [message] if message else []


def slide_tiles(slide: Slide, space: Any, features: Path | None = None, cache_dir: Path | None = None) -> SlideTiles:
    """Tile embeddings of a slide in ``space`` (a :class:`~medvl.tasks.space.JointSpace`).

    Stored features are projected when their provenance says they come from the model's own image tower with its
    transform; otherwise (another encoder, no provenance record, or no feature file) the tiles are read from the
    slide in batches and encoded with the model's image tower and transform. With ``cache_dir``, those encodings
    are kept there, keyed by the slide's content, the model's print and transform and the tile grid, so reopening
    the slide (a new app session, another page) does not encode it again.
    """
    grid = tile_grid_for(slide, features)
    if len(grid) == 0:
        raise InputError(slide.path, "no tissue tiles on this slide")
    notes = model_notes(space)
    if features is not None and Path(features).is_file():
        from medvl.io.embeddings import load_embeddings

        emb = load_embeddings(features)
        try:
            joint = space.to_joint(emb, "image", origin=features)
            return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, "stored tile features, projected",
                              notes)
        except InputError as exc:
            note = f"stored features do not fit this model ({exc.problem.split(';')[0]}); tiles re-encoded"
    else:
        note = "tiles encoded with the model's image tower"
    cached = _tile_cache_file(slide, space, grid, cache_dir)
    if cached is not None and cached.is_file():
        try:
            joint = np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            joint = None  # unreadable: encode again and replace it
        if joint is not None and joint.shape == (len(grid), space.dim):
            return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, note + " (cached)", notes)
    joint = encode_grid(slide, grid, space.model)
    if cached is not None:
        import io

        from medvl.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, joint, allow_pickle=False)
        try:
            atomic_write_bytes(cached, buf.getvalue())
        except OSError:
            pass  # a read-only workspace: the encodings are still returned, only not kept
    return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, note, notes)


def encode_grid(slide: Slide, grid: Any, model: Any, batch_size: int = 64, workers: int = 2) -> np.ndarray:
    """Joint-space embeddings of every tile of ``grid``, read and encoded batch by batch (memory flat in N)."""
    from medvl.pathology.loader import iter_tile_batches

    parts = [encode_tiles(model, tiles, batch_size)
             for _, tiles in iter_tile_batches(slide, grid, batch_size=batch_size, workers=workers)]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.embed_dim)), np.float32)


def _tile_cache_file(slide: Slide, space: Any, grid: Any, cache_dir: Path | None) -> Path | None:
    """Where the encodings of this slide, model and grid are kept (``None`` without a cache, or for a model whose
    weights have no content hash: one built from a registered name)."""
    from medvl.hashing import bytes_hash, config_hash
    from medvl.models.identity import model_print
    from medvl.provenance import Provenance, input_print

    printed = model_print(space.model, "image", projected=True)
    if cache_dir is None or printed.weights is None:
        return None
    coords = bytes_hash(np.ascontiguousarray(grid.coords, dtype=np.int64).tobytes())
    record = Provenance(model=printed, preprocessing=space.model.image_transform().to_dict(),
                        tiling={"coords": coords, "level": grid.level, "read_px": grid.read_px,
                                "tile_px": grid.tile_px}, input=input_print(slide.path))
    return Path(cache_dir) / f"slide-tiles-{config_hash(record.to_dict() | {'medvl_version': None})}.npy"
