"""GeoJSON annotations drawn in the slide viewer (QuPath exports, medvl's own tissue outlines).

Coordinates are level-0 slide pixels, as QuPath and ``medvl slide tile`` write them. What the viewer draws: polygon
and line outlines and points, one colour per feature (QuPath's ``classification.color`` when present). A file that
is not GeoJSON, a geometry whose coordinates are not finite numbers, an invalid polygon (a self-intersecting ring,
a hole outside its shell), or annotations that all lie off the slide (a
file in another coordinate frame, e.g. a thumbnail's or micrometres) are refused with a message naming the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medvl.errors import InputError
from medvl.pathology.regions import area_geometry

__all__ = ["load_geojson", "shapes_for_viewer"]

DEFAULT_COLOR = "#ffd400"
#: at most this many vertices are sent to the browser per file (outlines are thinned beyond it)
MAX_VERTICES = 200_000
_LINES = {"Polygon": 1, "MultiPolygon": 2, "LineString": 0, "MultiLineString": 1}


def load_geojson(source: str | Path | bytes, name: str = "annotations") -> list[dict[str, Any]]:
    """The features of a GeoJSON file or its bytes (a FeatureCollection, one Feature or one bare geometry)."""
    try:
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        data = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(name, f"not a readable GeoJSON file ({exc})") from None
    if not isinstance(data, dict) or "type" not in data:
        raise InputError(name, "not GeoJSON: expected an object with a 'type'")
    if data["type"] == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InputError(name, "a FeatureCollection needs a 'features' list")
    elif data["type"] == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    return features


def _points(coords: Any, depth: int, where: str) -> list[list[list[float]]]:
    """Rings (lists of ``[x, y]``) of a coordinate array nested ``depth`` levels above the rings' points."""
    if depth == 0:
        if not isinstance(coords, list) or not coords:
            raise InputError(None, f"{where}: empty or malformed coordinates")
        ring = []
        for p in coords:
            if (not isinstance(p, list) or len(p) < 2 or not all(isinstance(v, int | float) for v in p[:2])
                    or not all(math.isfinite(v) for v in p[:2])):
                raise InputError(None, f"{where}: a coordinate is not a pair of finite numbers")
            ring.append([float(p[0]), float(p[1])])
        return [ring]
    if not isinstance(coords, list):
        raise InputError(None, f"{where}: malformed coordinates")
    return [ring for part in coords for ring in _points(part, depth - 1, where)]


def _color(props: dict[str, Any]) -> str:
    cls = props.get("classification") if isinstance(props, dict) else None
    rgb = cls.get("color") if isinstance(cls, dict) else None
    if isinstance(rgb, list) and len(rgb) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in rgb):
        return "#{:02x}{:02x}{:02x}".format(*rgb)
    return DEFAULT_COLOR


def _shape(feature: Any, i: int) -> dict[str, Any] | None:
    where = f"feature {i + 1}"
    geom = feature.get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geom, dict) or not isinstance(geom.get("type"), str):
        raise InputError(None, f"{where}: no geometry")
    kind = geom["type"]
    color = _color(feature.get("properties") or {})
    if kind in _LINES:
        rings = _points(geom.get("coordinates"), _LINES[kind], f"{where} ({kind})")
        if kind in ("Polygon", "MultiPolygon"):
            area_geometry(geom, i, "annotations")  # an invalid ring (self-intersection, ...) is refused
        return {"rings": rings, "points": [], "closed": kind in ("Polygon", "MultiPolygon"), "color": color}
    if kind in ("Point", "MultiPoint"):
        coords = geom.get("coordinates")
        pts = _points([coords] if kind == "Point" else coords, 0, f"{where} ({kind})")[0]
        return {"rings": [], "points": pts, "closed": False, "color": color}
    if kind == "GeometryCollection":
        raise InputError(None, f"{where}: GeometryCollection is not drawn; export polygons instead")
    raise InputError(None, f"{where}: unknown geometry type '{kind}'")


def shapes_for_viewer(features: list[dict[str, Any]], dimensions: tuple[int, int],
                      name: str = "annotations") -> list[dict[str, Any]]:
    """Outlines for :func:`medvl.apps.viewerdata.viewer_args`, checked against the slide's level-0 frame.

    Raises:
        InputError: a malformed feature, or no vertex on the slide (another coordinate frame).
    """
    try:
        shapes = [s for i, f in enumerate(features) if (s := _shape(f, i)) is not None]
    except InputError as exc:
        raise InputError(name, exc.problem) from None
    w, h = dimensions
    vertices = [p for s in shapes for p in (*[q for r in s["rings"] for q in r], *s["points"])]
    if not vertices:
        return []
    if not any(0 <= x <= w and 0 <= y <= h for x, y in vertices):
        raise InputError(name, f"no annotation vertex lies on the slide ({w} x {h} level-0 pixels): the file is "
                               "in another coordinate frame (level-0 pixels expected, as QuPath exports them)")
    step = max(1, math.ceil(len(vertices) / MAX_VERTICES))
    if step > 1:
        for s in shapes:
            s["rings"] = [r[::step] + r[-1:] for r in s["rings"]]
    return shapes
