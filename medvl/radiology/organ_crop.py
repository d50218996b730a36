"""Organ-centred crops: a box in millimetres around an organ of a label map (RenalCLIP crops one around the kidney).

Pure array functions first (:func:`organ_box`, :func:`crop_box`, :func:`organ_crop`), then :class:`OrganCropd`, the
MONAI dictionary transform of the CT chain that wraps them. ``OrganCropd`` is a module-level class holding only plain
values, so the whole chain pickles into DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medvl.errors import InputError

__all__ = ["OrganCropd", "check_same_grid", "crop_box", "organ_box", "organ_crop", "shifted_affine", "voxel_spacing"]


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (column norms of the affine's 3 x 3 part)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def organ_box(label: np.ndarray, ids: list[int], spacing: tuple[float, ...], box_mm: tuple[float, ...]):
    """Voxel bounds ``(start, stop)`` of a ``box_mm`` box centred on the centroid of ``label in ids``.

    The bounds may extend past the array (the crop pads there). Returns ``None`` when no voxel carries the ids.
    """
    mask = np.isin(label, ids)
    if not mask.any():
        return None
    centroid = np.argwhere(mask).mean(axis=0)
    size = np.maximum(1, np.round(np.asarray(box_mm, dtype=float) / np.asarray(spacing, dtype=float))).astype(int)
    start = np.round(centroid - (size - 1) / 2.0).astype(int)
    return start, start + size


def crop_box(array: np.ndarray, start: np.ndarray, stop: np.ndarray, fill: float) -> np.ndarray:
    """``array[start:stop]`` over the last three axes, filled with ``fill`` outside the array."""
    spatial = np.asarray(array.shape[-3:])
    out = np.full((*array.shape[:-3], *(stop - start)), fill, dtype=array.dtype)
    src_lo, src_hi = np.maximum(start, 0), np.minimum(stop, spatial)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[..., dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = array[
        ..., src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]
    ]
    return out


def shifted_affine(affine: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The affine of a crop whose first voxel is voxel ``start`` of the original grid."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3, 3] = out[:3, :3] @ start + out[:3, 3]
    return out


def check_same_grid(image_shape: Sequence[int], image_affine: np.ndarray, label_shape: Sequence[int],
                    label_affine: np.ndarray) -> None:
    """An organ crop needs the label map on the image's grid (same shape and affine): a clear error otherwise."""
    if tuple(label_shape[-3:]) != tuple(image_shape[-3:]) or not np.allclose(
        np.asarray(label_affine), np.asarray(image_affine), atol=1e-2
    ):
        raise InputError(None, f"label map grid {tuple(label_shape[-3:])} does not match the image grid "
                               f"{tuple(image_shape[-3:])} (same shape and affine needed for an organ crop)")


def _box(label: np.ndarray, affine: np.ndarray, label_ids: list[int], box_mm: tuple[float, ...]):
    box = organ_box(label, label_ids, voxel_spacing(affine), box_mm)
    if box is None:
        raise InputError(None, f"label map has no voxel with label id(s) {label_ids}: organ not found")
    return box


def organ_crop(image: np.ndarray, label: np.ndarray, affine: np.ndarray, label_ids: list[int],
               box_mm: tuple[float, ...], fill: float = 0.0, label_fill: float = 0.0):
    """The array twin of :class:`OrganCropd`: crop ``image`` and ``label`` (spatial axes last, same grid) to the box.

    Returns:
        ``(image_crop, label_crop, affine_crop)``.

    Raises:
        InputError: no voxel of the label map carries ``label_ids``.
    """
    start, stop = _box(np.asarray(label).reshape(np.shape(label)[-3:]), affine, list(label_ids), tuple(box_mm))
    return (crop_box(np.asarray(image), start, stop, fill), crop_box(np.asarray(label), start, stop, label_fill),
            shifted_affine(affine, start))


class OrganCropd(MapTransform):
    """Crop ``keys`` to a box in mm centred on the organ (``label_ids``) of ``label_key``; pads with ``fill[key]``."""

    def __init__(self, keys: Any, label_key: str, label_ids: list[int], box_mm: Sequence[float],
                 fill: dict[str, float] | None = None):
        super().__init__(keys)
        self.label_key, self.label_ids, self.box_mm = label_key, list(label_ids), tuple(box_mm)
        self.fill = dict(fill or {})

    def __call__(self, data: Any) -> dict[str, Any]:
        d = dict(data)
        label, image = d[self.label_key], d[self.keys[0]]
        check_same_grid(image.shape, image.affine, label.shape, label.affine)
        start, stop = _box(np.asarray(label)[0], np.asarray(image.affine), self.label_ids, self.box_mm)
        for key in self.key_iterator(d):
            src = d[key]
            arr = crop_box(np.asarray(src), start, stop, self.fill.get(key, 0.0))
            d[key] = MetaTensor(arr, affine=shifted_affine(np.asarray(src.affine), start))
        return d
