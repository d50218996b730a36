"""Slide viewer logic: a slide's tile grid and its joint-space tile embeddings (for heatmaps and tile questions).

The deep-zoom view itself is drawn in the browser (:mod:`medvl.apps.components`, tiles from
:mod:`medvl.apps.tileserver`); what it overlays comes from :mod:`medvl.apps.viewerdata`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
