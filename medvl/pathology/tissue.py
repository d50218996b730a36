"""Tissue detection: HSV-saturation Otsu threshold with morphology, hole filling and a minimum area.

Stained tissue is coloured (saturated) while glass and background are grey, so Otsu's threshold on the saturation of
a low-resolution thumbnail separates them. A floor on the threshold keeps a blank slide from being split into noise.
The mask is exported as a preview PNG and as GeoJSON polygons (outer contours with holes, level-0 pixels) that QuPath
imports as annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_path, atomic_write_text
from medvl.config import Config
from medvl.errors import ConfigError
from medvl.io.slide import Slide
from medvl.log import get_logger
from medvl.pathology.artefacts import ArtefactConfig, apply_artefact_filters

log = get_logger(__name__)

__all__ = ["ARTEFACT_CLASSES", "TissueConfig", "TissueMask", "detect_tissue", "mask_to_geojson", "saturation_mask"]

#: artefact filter -> (QuPath classification, RGB colour in the PNG and GeoJSON)
ARTEFACT_CLASSES = {"pen": ("Pen mark", (230, 0, 200)), "blur": ("Out of focus", (240, 200, 0)),
                    "segmenter": ("Segmenter: not tissue", (40, 90, 230))}


@dataclass
class TissueConfig(Config):
    """How tissue is found.

    Attributes:
        seg_mpp: resolution (µm/px) of the thumbnail the mask is computed on.
        max_px: longest side of that thumbnail at most (also used when the slide has no mpp).
        min_saturation: floor on the Otsu threshold (saturation in [0, 1]); blank glass stays background.
        blur_px: median filter size on the saturation image (odd, thumbnail pixels).
        close_um: radius of the morphological closing that joins nearby fragments (µm).
        min_area_um2: tissue pieces smaller than this are dropped (µm²).
        max_hole_um2: holes smaller than this are filled; larger ones are kept as holes (µm²).
        artefacts: artefact filters (pen marks, blur, a deep segmenter) removed from the mask afterwards.
    """

    seg_mpp: float = 4.0
    max_px: int = 4096
    min_saturation: float = 0.05
    blur_px: int = 5
    close_um: float = 16.0
    min_area_um2: float = 20000.0
    max_hole_um2: float = 4000.0
    artefacts: ArtefactConfig = field(default_factory=ArtefactConfig)

    def validate(self) -> None:
        if self.seg_mpp <= 0 or self.max_px < 16:
            raise ConfigError("TissueConfig: seg_mpp must be > 0 and max_px >= 16")
        if not 0 <= self.min_saturation < 1:
            raise ConfigError("TissueConfig.min_saturation must be in [0, 1)")


@dataclass
class TissueMask:
    """A binary tissue mask on a thumbnail grid and how it maps to level 0.

    Attributes:
        mask: bool ``[h, w]``.
        scale: level-0 pixels per mask pixel (x, y).
        threshold: the saturation threshold used.
        slide_id: whose mask it is.
        artefacts: what each artefact filter removed from the tissue (bool masks on the same grid).
    """

    mask: np.ndarray
    scale: tuple[float, float]
    threshold: float
    slide_id: str
    artefacts: dict[str, np.ndarray] = field(default_factory=dict)

    def artefact_fractions(self) -> dict[str, float]:
        """Share of the thumbnail each artefact filter removed."""
        return {k: round(float(v.mean()), 5) for k, v in self.artefacts.items()}

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction_in_boxes(self, coords: np.ndarray, size_level0: float) -> np.ndarray:
        """Share of each level-0 box ``(x, y, size, size)`` covered by tissue (summed-area table: O(1) per box)."""
        h, w = self.mask.shape
        sat = np.zeros((h + 1, w + 1), dtype=np.int64)
        sat[1:, 1:] = self.mask.astype(np.int64).cumsum(0).cumsum(1)
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        x0 = np.clip(np.floor(coords[:, 0] / self.scale[0]), 0, w).astype(int)
        y0 = np.clip(np.floor(coords[:, 1] / self.scale[1]), 0, h).astype(int)
        x1 = np.clip(np.ceil((coords[:, 0] + size_level0) / self.scale[0]), 0, w).astype(int)
        y1 = np.clip(np.ceil((coords[:, 1] + size_level0) / self.scale[1]), 0, h).astype(int)
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
        return (inside / area).astype(np.float32)

    def to_geojson(self) -> dict[str, Any]:
        collection = mask_to_geojson(self.mask, self.scale, name=self.slide_id)
        for name, removed in self.artefacts.items():
            label, colour = ARTEFACT_CLASSES[name]
            collection["features"] += mask_to_geojson(removed, self.scale, name=f"{self.slide_id} {name}",
                                                      classification=label, colour=colour)["features"]
        return collection

    def save_geojson(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_geojson()) + "\n")

    def save_png(self, path: str | Path, thumbnail: np.ndarray | None = None) -> Path:
        """Mask preview: the thumbnail with tissue outlined in green (or the bare mask when no thumbnail)."""
        from PIL import Image

        if thumbnail is None:
            img = Image.fromarray((self.mask * 255).astype(np.uint8))
        else:
            rgb = thumbnail.astype(np.float32)
            tint = np.array([0, 200, 0], np.float32)
            rgb[self.mask] = 0.6 * rgb[self.mask] + 0.4 * tint
            rgb[~self.mask] = 0.5 * rgb[~self.mask] + 0.5 * 255
            for name, removed in self.artefacts.items():
                rgb[removed] = 0.4 * rgb[removed] + 0.6 * np.array(ARTEFACT_CLASSES[name][1], np.float32)
            img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG")
        return Path(path)


def saturation_mask(rgb: np.ndarray, config: TissueConfig, px_area_um2: float | None) -> tuple[np.ndarray, float]:
    """The tissue mask of an RGB uint8 image and the saturation threshold used (pure array function)."""
    from scipy import ndimage as ndi
    from skimage import filters, morphology

    img = rgb.astype(np.float32) / 255.0
    vmax, vmin = img.max(axis=2), img.min(axis=2)
    sat = np.where(vmax > 0, (vmax - vmin) / np.maximum(vmax, 1e-6), 0.0)
    if config.blur_px > 1:
        sat = ndi.median_filter(sat, size=config.blur_px | 1)
    otsu = float(filters.threshold_otsu(sat)) if np.ptp(sat) > 0 else 1.0
    threshold = max(otsu, config.min_saturation)
    mask = sat > threshold
    if px_area_um2 is None:  # no physical scale: areas as fractions of the image
        px_area_um2 = 1.0
        min_area = max(1, int(mask.size * 5e-4))
        max_hole = max(1, int(mask.size * 1e-4))
        radius = max(1, round(min(mask.shape) / 200))
    else:
        min_area = max(1, int(config.min_area_um2 / px_area_um2))
        max_hole = max(1, int(config.max_hole_um2 / px_area_um2))
        radius = max(1, round(config.close_um / np.sqrt(px_area_um2)))
    padded = np.pad(mask, radius, mode="edge")  # close without eroding tissue that touches the border
    mask = ndi.binary_closing(padded, structure=morphology.disk(radius))[radius:-radius, radius:-radius]
    mask = _drop_small_components(mask, min_area)
    mask = ~_drop_small_components(~mask, max_hole + 1)  # fill holes up to max_hole pixels
    return mask.astype(bool), threshold


def _drop_small_components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Keep the 8-connected components of ``mask`` with at least ``min_pixels`` pixels."""
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask.astype(bool)
    counts = np.bincount(labels.ravel())
    keep = counts >= min_pixels
    keep[0] = False
    return keep[labels]


def detect_tissue(slide: Slide, config: TissueConfig | None = None) -> tuple[TissueMask, np.ndarray]:
    """Find tissue on ``slide``; returns the mask and the thumbnail it was computed on.

    An empty result is logged as a warning naming the slide (callers report it; it is not a silent success).
    """
    config = config or TissueConfig()
    w0, h0 = slide.dimensions
    mpp = slide.mpp
    longest = max(w0, h0)
    max_px = config.max_px
    if mpp is not None:  # seg_mpp, but never coarser than 512 px (or the whole image) so small slides keep detail
        max_px = min(config.max_px, max(min(512, longest), round(longest * mpp / config.seg_mpp)))
    thumb = slide.thumbnail(max_px)
    scale = (w0 / thumb.shape[1], h0 / thumb.shape[0])
    px_area = None if mpp is None else (scale[0] * mpp) * (scale[1] * mpp)
    mask, threshold = saturation_mask(thumb, config, px_area)
    removed: dict[str, np.ndarray] = {}
    if config.artefacts.filters:
        scale_um = None if mpp is None else scale[0] * mpp
        mask, removed = apply_artefact_filters(slide, thumb, mask, config.artefacts, scale_um)
    result = TissueMask(mask=mask, scale=scale, threshold=threshold, slide_id=slide.slide_id, artefacts=removed)
    if result.empty:
        log.warning("%s: no tissue detected (saturation threshold %.3f)", slide.slide_id, threshold)
    return result, thumb


# ------------------------------------------------------------------------------------------------ GeoJSON
def _ring(contour_rc: np.ndarray, scale: tuple[float, float], clockwise: bool) -> list[list[float]]:
    from skimage.measure import approximate_polygon

    pts = approximate_polygon(contour_rc, tolerance=0.75)
    xy = np.stack([pts[:, 1] * scale[0], pts[:, 0] * scale[1]], axis=1)
    # shoelace sum: > 0 means counter-clockwise in (x, y); RFC 7946 wants outer rings counter-clockwise and holes
    # clockwise in the coordinate values themselves (on screen, with y pointing down, they look mirrored)
    area2 = float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))
    if (area2 < 0) != clockwise:
        xy = xy[::-1]
    ring = np.round(xy, 1).tolist()
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def _outer_contour(mask: np.ndarray) -> np.ndarray | None:
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return None
    longest = max(contours, key=len) - 1.0  # undo the padding offset
    return longest if len(longest) >= 4 else None


def mask_to_geojson(mask: np.ndarray, scale: tuple[float, float], name: str = "tissue",
                    classification: str = "Tissue", colour: tuple[int, int, int] = (0, 160, 0)) -> dict[str, Any]:
    """GeoJSON FeatureCollection of the mask's polygons (outer ring + hole rings) in level-0 pixel coordinates.

    Each feature is a QuPath annotation classified ``classification`` ("Tissue", or an artefact class); QuPath opens
    the file with File > Import objects.
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    features = []
    for region in range(1, n + 1):
        component = labels == region
        filled = ndi.binary_fill_holes(component)
        outer = _outer_contour(filled)
        if outer is None:
            continue
        rings = [_ring(outer, scale, clockwise=False)]
        holes, n_holes = ndi.label(filled & ~component)
        for h in range(1, n_holes + 1):
            contour = _outer_contour(holes == h)
            if contour is not None:
                rings.append(_ring(contour, scale, clockwise=True))
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {
                "objectType": "annotation",
                "name": f"{name} {classification.lower()} {region}",
                "classification": {"name": classification, "color": list(colour)},
                "isLocked": False,
            },
        })
    return {"type": "FeatureCollection", "features": features}
