"""``medvl slide embed``: one embedding per slide from its tile features, with the checks slide encoders need.

A slide encoder reads features of one tile encoder, cut at one resolution and tile size, laid on a grid whose step is
the level-0 tile stride. :func:`check_features` compares a feature file with the encoder's
:class:`~medvl.pathology.slide_encoders.SlideRequirements` before anything runs: a wrong feature width, a slide tiled
at another magnification, another tile size, another tile encoder, missing level-0 coordinates, or a grid whose
tiles collapse onto one cell (a wrong ``patch_size_level0``, TITAN #4/#24, STAMP #148) is one clear error naming the
file and what differs.

Grid positions are ``floor(coords / patch_size_level0)`` per axis: the tiles' column and row on the tiling grid,
the units Prov-GigaPath's ``floor(coords / 256)`` and TITAN's ``patch_size_lv0`` use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.features import read_features
from medvl.log import get_logger
from medvl.pathology.slide_encoders import SlideEncoder, SlideRequirements

log = get_logger(__name__)

__all__ = ["check_features", "embed_feature_file", "embed_slides", "feature_files", "grid_positions", "tile_encoder_of"]

_LABEL = re.compile(r"^(?P<card>[a-z0-9][a-z0-9._-]*)(@|/card:)")


def tile_encoder_of(label: str | None) -> str | None:
    """The card name in a feature file's ``encoder`` label (``NAME@sha256:...`` or ``NAME/card:...``), else
    ``None`` (a registered tower, a checkpoint, or a file another tool wrote)."""
    match = _LABEL.match(str(label or ""))
    return match.group("card") if match else None


def _magnification(mpp: float) -> str:
    return f"{10.0 / mpp:g}x"


def _check_tiling(needs: SlideRequirements, attrs: dict[str, Any], path: Path, who: str) -> None:
    mpp, tile_px = attrs.get("mpp"), attrs.get("tile_px")
    if needs.mpp is not None:
        if mpp is None:
            raise InputError(path, f"the feature file does not say its tiling resolution (attribute 'mpp'); "
                                   f"{who} needs tiles at {needs.mpp:g} µm/px ({_magnification(needs.mpp)})")
        if abs(float(mpp) - needs.mpp) > needs.mpp_tolerance * needs.mpp:
            tiles = f"{needs.tile_px} px tiles" if needs.tile_px else "tiles"
            raise InputError(path, f"tiled at {float(mpp):g} µm/px ({_magnification(float(mpp))}), but {who} needs "
                                   f"{tiles} at {needs.mpp:g} µm/px ({_magnification(needs.mpp)}): re-extract with "
                                   f"--encoder {needs.tile_encoder or '<tile encoder>'} (the card tiles it right)")
    if needs.tile_px is not None and tile_px is not None and int(tile_px) != needs.tile_px:
        raise InputError(path, f"tiles of {int(tile_px)} px, but {who} needs {needs.tile_px} px tiles at "
                               f"{needs.mpp:g} µm/px: re-extract with "
                               f"--encoder {needs.tile_encoder or '<tile encoder>'}")


def check_features(needs: SlideRequirements, feats: np.ndarray, attrs: dict[str, Any], path: str | Path,
                   who: str = "the slide encoder") -> list[str]:
    """Refuse a feature file the slide encoder cannot read (one :class:`InputError` naming what differs); returns
    warnings for facts the file does not record."""
    path = Path(path)
    warnings = []
    if needs.feature_dim is not None and feats.shape[1] != needs.feature_dim:
        of = f" of '{needs.tile_encoder}'" if needs.tile_encoder else ""
        raise InputError(path, f"features are {feats.shape[1]}-d, but {who} reads {needs.feature_dim}-d features{of}")
    _check_tiling(needs, attrs, path, who)
    made_by = tile_encoder_of(attrs.get("encoder"))
    if needs.tile_encoder is not None:
        if made_by is not None and made_by != needs.tile_encoder:
            raise InputError(path, f"features of '{made_by}', but {who} reads features of '{needs.tile_encoder}'")
        if made_by is None:
            warnings.append(f"{path.name}: the file does not name a model card as its tile encoder "
                            f"({attrs.get('encoder') or 'no encoder attribute'}); {who} expects '{needs.tile_encoder}'")
    if needs.coords == "level0" and not attrs.get("patch_size_level0"):
        raise InputError(path, f"{who} needs level-0 coordinates with 'patch_size_level0' (the level-0 tile stride); "
                               "the file has none")
    return warnings


def grid_positions(coords: np.ndarray, patch_size_level0: float, path: str | Path = "features",
                   limit: int | None = None) -> np.ndarray:
    """``[N, 2]`` int64 (column, row) of each tile on the tiling grid; a grid whose tiles collapse onto one cell (a
    wrong ``patch_size_level0``, or overlapping tiles) or that exceeds ``limit`` is an :class:`InputError`."""
    if patch_size_level0 <= 0:
        raise InputError(path, f"patch_size_level0 must be > 0, got {patch_size_level0}")
    grid = np.floor(np.asarray(coords, dtype=np.float64) / float(patch_size_level0) + 1e-6).astype(np.int64)
    if len(grid) and len(np.unique(grid, axis=0)) < len(grid):
        raise InputError(path, f"tiles collapse onto the same grid cell with patch_size_level0 "
                               f"{patch_size_level0:g}: the level-0 tile stride does not match the coordinates "
                               "(overlapping tiles, or a stride computed for another magnification)")
    if limit is not None and len(grid) and (grid.max() >= limit or grid.min() < 0):
        raise InputError(path, f"the slide spans {int(grid.max()) + 1} grid cells on one axis; the slide encoder's "
                               f"grid holds {limit}")
    return grid


def embed_feature_file(path: str | Path, encoder: SlideEncoder) -> tuple[np.ndarray, list[str]]:
    """The slide embedding of one feature file (``[embed_dim]`` float32) and the warnings to show."""
    path = Path(path)
    feats, coords, attrs = read_features(path)
    if len(feats) == 0:
        raise InputError(path, "no tiles: nothing to embed")
    who = f"slide encoder '{encoder.title or encoder.name}'"
    warnings = check_features(encoder.requirements, feats, attrs, path, who)
    patch0 = float(attrs.get("patch_size_level0") or 0)
    grid = (grid_positions(coords, patch0, path, encoder.grid_limit) if patch0
            else np.zeros((len(feats), 2), dtype=np.int64))
    vector = encoder.encode(feats, grid, {**attrs, "_coords": coords})
    if vector.shape != (encoder.embed_dim,) or not np.isfinite(vector).all():
        raise InputError(path, f"the slide encoder returned {vector.shape} (expected finite [{encoder.embed_dim}])")
    return vector.astype(np.float32), warnings


def feature_files(source: str | Path) -> list[Path]:
    """A feature ``.h5`` or a folder of them (sorted); a clear error when there is none."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InputError(source, "feature file or folder not found")
    files = sorted(p for p in source.glob("*.h5") if p.is_file())
    if not files:
        raise InputError(source, "no .h5 feature files in this folder (run: medvl slide extract)")
    return files


def embed_slides(source: str | Path, spec, out: str | Path, skip_errors: bool = False,
                 on_record=None) -> dict[str, Any]:
    """Embed every feature file of ``source`` with the slide encoder ``spec`` names and write one embeddings file
    (``ids`` = slide ids, ``modality`` slide, ``encoder`` = the encoder's label) atomically to ``out``.

    Without ``skip_errors`` the first bad file stops the run (nothing is written); with it, bad files are listed in
    the summary's ``errors`` and the others are written.
    """
    from medvl.errors import MedvlError
    from medvl.io.embeddings import EmbeddingSet, save_embeddings
    from medvl.pathology.slide_encoders import load_slide_encoder

    files = feature_files(source)
    encoder = load_slide_encoder(spec)
    ids, vectors, records, errors, warnings = [], [], [], [], list(encoder.warnings)
    for path in files:
        try:
            vector, notes = embed_feature_file(path, encoder)
        except MedvlError as exc:
            if not skip_errors:
                raise
            record = {"slide_id": path.stem, "status": "error", "error": str(exc)}
            errors.append(record)
        else:
            ids.append(path.stem)
            vectors.append(vector)
            warnings += notes
            record = {"slide_id": path.stem, "status": "ok", "dim": int(vector.shape[0])}
        records.append(record)
        if on_record is not None:
            on_record(record)
    for warning in warnings:
        log.warning(warning)
    summary: dict[str, Any] = {"slides": len(records), "encoder": encoder.name, "records": records,
                               "counts": {"ok": len(ids), "error": len(errors)}, "warnings": warnings}
    if ids:
        save_embeddings(out, EmbeddingSet(np.stack(vectors), ids=np.asarray(ids), encoder=encoder.name,
                                          modality="slide", projected=False))
        summary["out"] = str(out)
    return summary
