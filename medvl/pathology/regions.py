"""Annotated regions from GeoJSON (QuPath exports): restrict tiling to them, or evaluate a heatmap inside them.

QuPath writes coordinates in level-0 pixels with the origin at the image's top-left corner, one Feature per object
(``properties.classification.name`` is the class). Polygons and multipolygons are regions; points and lines are
skipped (they enclose no area). A file is refused, with the feature named, when it is not GeoJSON, a geometry is
invalid (a self-intersecting ring, a hole outside its shell: shapely's reason is given), or a region lies mostly
off the slide (a file in another coordinate frame: a thumbnail's pixels, micrometres, another slide).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError, require

__all__ = ["MIN_REGION_SHARE", "Region", "annotation_file", "area_geometry", "evaluate_regions", "load_regions",
           "region_fraction", "restrict_grid", "tile_scores_file"]

#: a region must have at least this share of its area on the slide; less means another coordinate frame
MIN_ON_SLIDE = 0.5
_AREAS = ("Polygon", "MultiPolygon")


@dataclass
class Region:
    """One annotated area: its name, QuPath class and shapely geometry (level-0 pixels)."""

    name: str
    classification: str | None
    geometry: Any


def _features(source: str | Path | bytes, where: str) -> list[Any]:
    try:
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        data = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(where, f"not a readable GeoJSON file ({exc})") from None
    if isinstance(data, list):  # QuPath's export without FEATURE_COLLECTION: a bare array of features
        return data
    if not isinstance(data, dict) or "type" not in data:
        raise InputError(where, "not GeoJSON: expected a FeatureCollection, a Feature or an array of features")
    if data["type"] == "FeatureCollection":
        if not isinstance(data.get("features"), list):
            raise InputError(where, "a FeatureCollection needs a 'features' list")
        return data["features"]
    return [data] if data["type"] == "Feature" else [{"type": "Feature", "geometry": data, "properties": {}}]


def _closed(coords: Any, depth: int) -> Any:
    """Rings closed (first point repeated at the end) where a file left them open; anything else unchanged."""
    if not isinstance(coords, list):
        return coords
    if depth == 0:
        return coords + coords[:1] if len(coords) >= 3 and coords[0] != coords[-1] else coords
    return [_closed(part, depth - 1) for part in coords]


def area_geometry(geom: dict[str, Any], i: int, where: str) -> Any:
    """The shapely geometry of a GeoJSON (multi)polygon, checked: finite coordinates, valid rings.

    Raises:
        InputError: malformed coordinates, or an invalid geometry (with shapely's reason and how to repair it).
    """
    shapely = require("shapely", "interop", "GeoJSON regions")
    from shapely.validation import explain_validity

    geom = {**geom, "coordinates": _closed(geom.get("coordinates"), 1 if geom.get("type") == "Polygon" else 2)}
    try:
        shape = shapely.geometry.shape(geom)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(where, f"feature {i + 1}: malformed {geom['type']} coordinates ({exc})") from None
    if shape.is_empty or not np.all(np.isfinite(shape.bounds)):
        raise InputError(where, f"feature {i + 1}: empty geometry or coordinates that are not finite numbers")
    if not shape.is_valid:
        raise InputError(where, f"feature {i + 1}: invalid {geom['type']} ({explain_validity(shape)}); repair it "
                                "(QuPath: Objects > Annotations > Fix geometry) and export again")
    return shape


def _region(feature: Any, i: int, where: str) -> Region | None:
    geom = feature.get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geom, dict) or not isinstance(geom.get("type"), str):
        raise InputError(where, f"feature {i + 1}: no geometry")
    if geom["type"] not in _AREAS:
        return None
    shape = area_geometry(geom, i, where)
    props = feature.get("properties") or {}
    cls = props.get("classification") if isinstance(props, dict) else None
    cls_name = cls.get("name") if isinstance(cls, dict) else None
    name = props.get("name") if isinstance(props, dict) and isinstance(props.get("name"), str) else None
    return Region(name or cls_name or f"region {i + 1}", cls_name, shape)


def load_regions(source: str | Path | bytes, dimensions: tuple[int, int], name: str | None = None) -> list[Region]:
    """The annotated areas of a GeoJSON file, checked against the slide's level-0 frame ``dimensions`` (w, h).

    Raises:
        InputError: not GeoJSON, no polygon, an invalid geometry, or a region mostly off the slide.
    """
    shapely = require("shapely", "interop", "GeoJSON regions")
    where = name or (str(source) if not isinstance(source, bytes) else "annotations")
    regions = [r for i, f in enumerate(_features(source, where)) if (r := _region(f, i, where)) is not None]
    if not regions:
        raise InputError(where, "no polygon annotation (points and lines enclose no region)")
    slide = shapely.geometry.box(0, 0, *dimensions)
    for i, r in enumerate(regions):
        on = r.geometry.intersection(slide).area / max(r.geometry.area, 1e-12)
        if on < MIN_ON_SLIDE:
            raise InputError(where, f"region {i + 1} ('{r.name}') lies {1 - on:.0%} off the slide ({dimensions[0]} x "
                                    f"{dimensions[1]} level-0 pixels): the file is in another coordinate frame "
                                    "(level-0 pixels expected, as QuPath exports them)")
    return regions


def region_fraction(coords: np.ndarray, size_level0: float, regions: list[Region]) -> np.ndarray:
    """Share of each level-0 tile box ``(x, y, size, size)`` covered by the union of ``regions``."""
    shapely = require("shapely", "interop", "GeoJSON regions")
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if not len(coords):
        return np.zeros(0, np.float32)
    union = shapely.union_all([r.geometry for r in regions])
    shapely.prepare(union)
    boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + size_level0, coords[:, 1] + size_level0)
    return (shapely.area(shapely.intersection(boxes, union)) / float(size_level0) ** 2).astype(np.float32)


def _inside(coords: np.ndarray, size_level0: float, region: Region) -> np.ndarray:
    shapely = require("shapely", "interop", "GeoJSON regions")
    centres = np.asarray(coords, np.float64) + size_level0 / 2
    return np.asarray(shapely.contains_xy(region.geometry, centres[:, 0], centres[:, 1]), bool)


def evaluate_regions(coords: np.ndarray, size_level0: float, scores: np.ndarray, regions: list[Region],
                     threshold: float = 0.5) -> list[dict[str, Any]]:
    """Per region: how the heatmap (one score per tile) agrees with it.

    A tile belongs to a region when its centre lies inside. ``dice`` compares the tiles at or above ``threshold``
    with the region's tiles; ``auc`` ranks all tiles by score against membership (``None`` when every tile or none
    is inside). A last row, ``all regions``, does the same for their union.
    """
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(coords):
        raise InputError(None, f"{len(scores)} scores for {len(coords)} tiles")
    predicted = scores >= threshold
    rows = []
    memberships = [(r.name, r.classification, _inside(coords, size_level0, r)) for r in regions]
    union = np.any([m for *_, m in memberships], axis=0)
    for name, cls, inside in [*memberships, ("all regions", None, union)]:
        both = int((inside & predicted).sum())
        denom = int(inside.sum() + predicted.sum())
        auc = float(roc_auc_score(inside, scores)) if 0 < inside.sum() < len(inside) else None
        rows.append({"region": name, "classification": cls, "tiles_inside": int(inside.sum()),
                     "tiles_predicted": int(predicted.sum()), "dice": (2 * both / denom) if denom else None,
                     "auc": auc})
    return rows


def tile_scores_file(path: str | Path) -> dict[str, Any]:
    """A ``medvl zeroshot --tile-scores`` file: scores ``[N, C]``, class ids and names, coords, tile size."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "tile scores not found (write them with medvl zeroshot --tile-scores)")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {"scores": np.asarray(z["scores"], np.float64), "class_ids": [str(c) for c in z["class_ids"]],
                   "coords": np.asarray(z["coords"], np.float64),
                   "patch_size_level0": float(z["patch_size_level0"]) if "patch_size_level0" in z.files else 0.0}
            names = [str(c) for c in z["class_names"]] if "class_names" in z.files else out["class_ids"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a tile-scores file of medvl zeroshot ({exc})") from None
    out["class_names"] = names
    if out["scores"].ndim != 2 or len(out["scores"]) != len(out["coords"]) \
            or out["scores"].shape[1] != len(out["class_ids"]):
        raise InputError(path, "scores, coords and class ids disagree in size")
    return out


#: a tile is kept inside the annotated regions when at least this share of it is covered
MIN_REGION_SHARE = 0.5


def restrict_grid(grid: Any, regions: list[Region], min_share: float = MIN_REGION_SHARE) -> Any:
    """The tiles of ``grid`` (a :class:`~medvl.pathology.tiling.TileGrid`) covered by the regions."""
    from dataclasses import replace

    keep = region_fraction(grid.coords, grid.patch_size_level0, regions) >= min_share
    fraction = None if grid.tissue_fraction is None else grid.tissue_fraction[keep]
    return replace(grid, coords=grid.coords[keep], tissue_fraction=fraction)


def annotation_file(annotations: Path, slide_id: str) -> Path:
    """The GeoJSON of one slide: ``annotations`` itself, or ``<annotations>/<slide_id>.geojson`` for a folder."""
    path = annotations / f"{slide_id}.geojson" if annotations.is_dir() else annotations
    if not path.is_file():
        raise InputError(path, "annotation file not found" + (f" for slide {slide_id}" if annotations.is_dir()
                                                              else ""))
    return path
