"""The model's view of a CT, shown in place: the box that the preprocessing chain cut out of the scan.

A preprocessing (:class:`~medvl.radiology.transforms.CTPreprocessConfig`: organ box, resampling, body crop,
pad/crop to the tower's input size) maps the scan to a grid whose voxel -> RAS affine the chain returns
(:func:`~medvl.radiology.transforms.run_chain`) and the volume cache stores with every entry. The grid's corners,
taken through that affine and back through the viewer volume's own affine, give the box in viewer voxels; each
plane draws its cross-section. Preprocessings are found where the workspace caches them (``volumes/<hash>/``, with
the resolved ``config.json``); a cached entry for this scan gives the exact grid, otherwise the chain is run once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ModelInput", "crop_bounds", "describe", "embedding_preprocessings", "find_preprocessings", "model_input",
           "plane_rect"]


@dataclass(frozen=True)
class ModelInput:
    """Where the model's input grid lies in the viewer volume.

    Attributes:
        bounds: ``((x0, x1), (y0, y1), (z0, z1))`` in viewer (RAS) voxel edges; may reach past the scan (padding).
        shape: the grid's size in voxels (x, y, z).
        spacing: the grid's voxel size in mm.
        cached: whether the grid came from the workspace's cache (else the chain was run for the viewer).
    """

    bounds: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    cached: bool


def find_preprocessings(volumes_dir: Path) -> list[tuple[Path, Any]]:
    """``(cache folder, config)`` of every preprocessing cached under ``volumes_dir`` (unreadable configs skipped)."""
    from medvl.errors import MedvlError
    from medvl.radiology.transforms import CTPreprocessConfig

    found = []
    if not Path(volumes_dir).is_dir():
        return found
    for cfg_file in sorted(Path(volumes_dir).glob("*/config.json")):
        try:
            found.append((cfg_file.parent, CTPreprocessConfig.from_file(cfg_file)))
        except (MedvlError, OSError, ValueError):
            continue
    return found


def embedding_preprocessings(workspace: Path) -> set[str]:
    """Fingerprints of the preprocessings that the workspace's CT embeddings were made with (the resolved config
    ``medvl ct embed`` writes beside each embeddings file, in ``volumes/`` or ``features/``)."""
    import json

    from medvl.errors import MedvlError
    from medvl.radiology.transforms import CTPreprocessConfig

    found = set()
    for folder in ("volumes", "features"):
        for sidecar in sorted((Path(workspace) / folder).glob("*.config.json")):
            try:
                stored = json.loads(sidecar.read_text()).get("ct_preprocess")
                if isinstance(stored, dict):
                    found.add(CTPreprocessConfig.from_dict(stored).fingerprint())
            except (MedvlError, OSError, ValueError, AttributeError):
                continue
    return found


def describe(config: Any) -> str:
    """One line naming what a preprocessing does."""
    x, y, z = config.spatial_size
    parts = [f"{x}×{y}×{z} voxels"]
    if config.spacing is not None:
        parts.append("at " + "×".join(f"{s:g}" for s in config.spacing) + " mm")
    if config.organ_crop is not None:
        box = "×".join(f"{v:g}" for v in config.organ_crop.box_mm)
        parts.append(f"{box} mm box around {', '.join(map(str, config.organ_crop.labels))}")
    if config.foreground_crop:
        parts.append("body crop")
    return ", ".join(parts)


def crop_bounds(grid_affine: np.ndarray, grid_shape: tuple[int, int, int],
                view_affine: np.ndarray) -> tuple[tuple[float, float], ...]:
    """The grid's voxel box (edges) in the viewer volume's voxel coordinates, per axis ``(low, high)``."""
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, grid_shape[0] - 0.5) for j in (-0.5, grid_shape[1] - 0.5)
                        for k in (-0.5, grid_shape[2] - 0.5)])
    view = (np.linalg.inv(view_affine) @ (np.asarray(grid_affine) @ corners.T)).T[:, :3] + 0.5
    return tuple((float(view[:, a].min()), float(view[:, a].max())) for a in range(3))


def model_input(source: Path, labels: Path | None, cache_dir: Path, config: Any,
                view_affine: np.ndarray) -> ModelInput:
    """The preprocessing's grid for this scan: from its cache entry when there is one, else by running the chain.

    Raises:
        InputError: the chain refuses the scan (no organ in the label map, no label map for an organ crop, ...).
    """
    from medvl.errors import InputError
    from medvl.io.volume import load_volume
    from medvl.radiology.cache import VolumeCache
    from medvl.radiology.transforms import run_chain

    cache = VolumeCache(cache_dir.parent, config)
    keys = [cache.key(source, labels)] if labels is not None else []
    if config.organ_crop is None:
        keys.append(cache.key(source))
    entry = next((e for k in keys if (e := cache.get(k)) is not None), None)
    shape = tuple(int(v) for v in config.spatial_size)
    if entry is not None:
        affine, cached = entry.affine, True
    else:
        if config.organ_crop is not None and labels is None:
            raise InputError(source, "this preprocessing crops around an organ: load the scan's label map")
        _, affine = run_chain(load_volume(source), config, load_volume(labels) if labels is not None else None)
        cached = False
    spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    return ModelInput(crop_bounds(affine, shape, view_affine), shape, spacing, cached)  # type: ignore[arg-type]


def plane_rect(bounds: tuple[tuple[float, float], ...], shape: tuple[int, int, int], plane: str,
               index: int) -> tuple[float, float, float, float] | None:
    """The box's cross-section ``(c0, r0, c1, r1)`` in a displayed slice's pixels (radiological orientation, as
    :func:`medvl.apps.ctview.plane_slice` shows it), or None when slice ``index`` misses the box."""
    from medvl.apps.ctview import PLANES

    axis = PLANES[plane]
    lo, hi = bounds[axis]
    if not lo <= index + 0.5 <= hi:
        return None
    # displayed rows run along the second remaining axis reversed, columns along the first reversed
    first, second = (a for a in range(3) if a != axis)
    (c_lo, c_hi), (r_lo, r_hi) = bounds[first], bounds[second]
    return shape[first] - c_hi, shape[second] - r_hi, shape[first] - c_lo, shape[second] - r_lo
