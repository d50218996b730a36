"""Tile scores as QuPath detections (GeoJSON), so a pathologist can open the heatmap in QuPath.

One Feature per tile: a square ``Polygon`` in level-0 pixels (QuPath's frame: origin top-left, pixel units),
``properties.objectType = "detection"``, ``classification`` the tile's top class (name and RGB colour), and one
measurement per class (``"<class name> probability"``), so QuPath's *Measure > Show measurement maps* draws the
heatmap of any class. Measurements are written as a name -> value object (QuPath 0.4 and later). The file is a
``FeatureCollection`` (File > Import objects, or drag it onto the image).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_write_text
from medvl.errors import InputError

__all__ = ["class_colours", "detections_geojson", "write_detections"]

#: QuPath-like distinct colours, cycled over the classes
_PALETTE = ((200, 0, 0), (0, 150, 200), (0, 160, 60), (230, 140, 0), (140, 60, 200), (120, 120, 120),
            (240, 80, 160), (90, 60, 30), (0, 200, 200), (200, 200, 0))


def class_colours(n: int) -> list[list[int]]:
    return [list(_PALETTE[i % len(_PALETTE)]) for i in range(n)]


def detections_geojson(coords: np.ndarray, size_level0: float, scores: np.ndarray, class_names: list[str],
                       seed: int = 0) -> dict[str, Any]:
    """The FeatureCollection of tile detections (see the module docstring).

    Args:
        coords: ``[N, 2]`` level-0 top-left corners of the tiles.
        size_level0: tile side in level-0 pixels.
        scores: ``[N, C]`` class probabilities per tile.
        class_names: the ``C`` class names (measurement and classification names).
        seed: seeds the feature ids (stable across runs for the same input).
    """
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    scores = np.asarray(scores, np.float64)
    if scores.shape != (len(coords), len(class_names)):
        raise InputError(None, f"scores {scores.shape} do not match {len(coords)} tiles x {len(class_names)} classes")
    if size_level0 <= 0:
        raise InputError(None, "the tile size in level-0 pixels is unknown (tile scores from an older medvl: run "
                               "medvl zeroshot --tile-scores again)")
    colours = class_colours(len(class_names))
    rng = np.random.default_rng(seed)
    features = []
    for (x, y), row in zip(coords, scores, strict=True):
        top = int(np.argmax(row))
        ring = [[x, y], [x + size_level0, y], [x + size_level0, y + size_level0], [x, y + size_level0], [x, y]]
        features.append({
            "type": "Feature",
            "id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "geometry": {"type": "Polygon", "coordinates": [[[round(a, 2), round(b, 2)] for a, b in ring]]},
            "properties": {
                "objectType": "detection",
                "classification": {"name": class_names[top], "color": colours[top]},
                "measurements": {f"{n} probability": round(float(v), 6) for n, v in zip(class_names, row,
                                                                                         strict=True)},
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_detections(path: str | Path, coords: np.ndarray, size_level0: float, scores: np.ndarray,
                     class_names: list[str]) -> Path:
    """Write :func:`detections_geojson` to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(detections_geojson(coords, size_level0, scores, class_names)) + "\n")
