"""Slide viewer logic: a slide's tile grid and its joint-space tile embeddings (for heatmaps and tile questions).

The deep-zoom view itself is drawn in the browser (:mod:`medvl.apps.components`, tiles from
:mod:`medvl.apps.tileserver`); what it overlays comes from :mod:`medvl.apps.viewerdata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.slide import Slide
from medvl.tasks.vectors import l2_normalise

#: slide file suffixes the viewer accepts for uploads (OpenSlide / tiffslide / DICOM)
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".vms", ".svslide", ".dcm")


# ------------------------------------------------------------------------------------------------ tiles
@dataclass
class SlideTiles:
    """A slide's tile grid and joint-space tile embeddings.

    Attributes:
        coords: ``[N, 2]`` level-0 corners.
        patch_size_level0: tile side in level-0 pixels.
        embeddings: ``[N, D]`` L2-normalised joint-space embeddings.
        source: how the embeddings were made (shown to the user).
    """

    coords: np.ndarray
    patch_size_level0: float
    embeddings: np.ndarray
    source: str


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
    """Joint-space embeddings of RGB ``uint8`` tiles through the model's image tower and its preprocessing."""
    import torch
    import torch.nn.functional as F

    tower = model.towers["image"]
    cfg = getattr(tower, "data_config", None) or {}
    _, h, w = cfg.get("input_size", (3, 224, 224))
    mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(tiles), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(tiles[start:start + batch_size])).permute(0, 3, 1, 2).float()
            x = F.interpolate(x / 255.0, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            out.append(model.encode_image((x - mean) / std).float().numpy())
    emb = np.concatenate(out) if out else np.zeros((0, int(model.embed_dim)), np.float32)
    return l2_normalise(emb)


def slide_tiles(slide: Slide, space: Any, features: Path | None = None, cache_dir: Path | None = None) -> SlideTiles:
    """Tile embeddings of a slide in ``space`` (a :class:`~medvl.tasks.space.JointSpace`).

    Stored features are projected when they come from the model's own image tower; otherwise (another encoder, or
    no feature file) the tiles are read from the slide in batches and encoded with the model's image tower. With
    ``cache_dir``, those encodings are kept there, keyed by the slide's bytes, the checkpoint's weights and the tile
    grid, so reopening the slide (a new app session, another page) does not encode it again.
    """
    grid = tile_grid_for(slide, features)
    if len(grid) == 0:
        raise InputError(slide.path, "no tissue tiles on this slide")
    if features is not None and Path(features).is_file():
        from medvl.io.embeddings import load_embeddings

        emb = load_embeddings(features)
        try:
            joint = space.to_joint(emb, "image", origin=features)
            return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, "stored tile features, projected")
        except InputError as exc:
            note = f"stored features do not fit this model ({exc.problem}); tiles re-encoded"
    else:
        note = "tiles encoded with the model's image tower"
    cached = _tile_cache_file(slide, space, grid, cache_dir)
    if cached is not None and cached.is_file():
        try:
            joint = np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            joint = None  # unreadable: encode again and replace it
        if joint is not None and joint.shape == (len(grid), space.dim):
            return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, note + " (cached)")
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
    return SlideTiles(grid.coords, float(grid.patch_size_level0), joint, note)


def encode_grid(slide: Slide, grid: Any, model: Any, batch_size: int = 64, workers: int = 2) -> np.ndarray:
    """Joint-space embeddings of every tile of ``grid``, read and encoded batch by batch (memory flat in N)."""
    from medvl.pathology.loader import iter_tile_batches

    parts = [encode_tiles(model, tiles, batch_size)
             for _, tiles in iter_tile_batches(slide, grid, batch_size=batch_size, workers=workers)]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.embed_dim)), np.float32)


def _tile_cache_file(slide: Slide, space: Any, grid: Any, cache_dir: Path | None) -> Path | None:
    """Where the encodings of this slide, checkpoint and grid are kept; None without a cache or a checkpoint folder
    (a registered model name has no weights file to key on)."""
    from medvl.hashing import bytes_hash, config_hash, memo_content_hash
    from medvl.models.checkpoint import WEIGHTS

    weights = Path(space.source) / WEIGHTS
    if cache_dir is None or not weights.is_file():
        return None
    coords = bytes_hash(np.ascontiguousarray(grid.coords, dtype=np.int64).tobytes())
    memo = Path(cache_dir) / "fingerprints.json"  # stat first: a large slide is hashed once, not per look-up
    key = config_hash([memo_content_hash(slide.path, memo), memo_content_hash(weights, memo), coords, grid.level,
                       grid.read_px, grid.tile_px])
    return Path(cache_dir) / f"slide-tiles-{key}.npy"
