"""CT viewer logic: a volume (and label map) in RAS order, orthogonal slices in radiological display orientation,
window presets or custom level/width, label overlays and square display pixels whatever the voxel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medvl.apps import render
from medvl.errors import InputError

#: accepted CT uploads (a DICOM series needs a folder: pick it from the workspace instead)
CT_SUFFIXES = (".nii", ".nii.gz")
#: the three planes and the RAS axis each one slices through
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}
#: colour of slices missing from a series, and of the model-input box
GAP_RGB = (120, 0, 120)
CROP_RGB = (255, 200, 0)


@dataclass
class ViewVolume:
    """A volume reoriented to RAS (array axes: x to the patient's right, y anterior, z superior).

    Attributes:
        array: float32 HU ``[X, Y, Z]``; NaN on slices missing from the series.
        spacing: mm per voxel along x, y, z.
        labels: optional integer label map of the same shape.
        affine: voxel -> RAS mm of ``array``.
        missing: per RAS axis, the indices of slices absent from the series (drawn as a band).
        warnings: what the reader found wrong with the input (missing slices, irregular steps).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    labels: np.ndarray | None = None
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    missing: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = ((), (), ())
    warnings: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    def n_slices(self, plane: str) -> int:
        return self.shape[PLANES[plane]]


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Reorder/flip array axes so that they run R, A, S; returns the array, spacing and the orientation transform."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(array, ornt)
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    ras_spacing = tuple(float(spacing[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return np.ascontiguousarray(out), ras_spacing, ornt  # type: ignore[return-value]


def ras_affine(affine: np.ndarray, ornt: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The voxel -> RAS affine of an array reoriented by :func:`to_ras` (``shape``: the array before it)."""
    import nibabel as nib

    return np.asarray(affine) @ nib.orientations.inv_ornt_aff(ornt, shape)


def load_view_volume(path: str | Path, labels: str | Path | None = None) -> ViewVolume:
    """Read a CT (DICOM folder or NIfTI) and optionally a label map on the same grid, in RAS order; a DICOM series
    with missing slices gets empty slices at the missing positions (:mod:`medvl.apps.ctgaps`).

    Raises:
        InputError: unreadable volume, or a label map of another shape.
    """
    from medvl.apps.ctgaps import fill_gaps, slice_gaps
    from medvl.io.volume import load_volume

    vol = load_volume(path)
    data, gaps = vol.array, slice_gaps(path)
    if gaps is not None and len(gaps.positions) == data.shape[2]:
        data = fill_gaps(data, gaps)
    array, spacing, ornt = to_ras(data, vol.affine)
    gap_mask = np.zeros(data.shape[2], bool)
    if data is not vol.array:
        gap_mask[list(gaps.missing)] = True
    lab = None
    if labels is not None:
        lvol = load_volume(labels)
        if lvol.shape != vol.shape:
            raise InputError(labels, f"label map shape {lvol.shape} does not match the CT {vol.shape}")
        ldata = np.rint(lvol.array).astype(np.int32)
        lab, _, _ = to_ras(fill_gaps(ldata, gaps, 0) if data is not vol.array else ldata, lvol.affine)
    # the slice axis of the stored array is the one missing slices lie along; find it in RAS order
    ras_axis = int(ornt[2, 0])
    flipped = ornt[2, 1] < 0
    missing = [(), (), ()]
    idx = np.flatnonzero(gap_mask[::-1] if flipped else gap_mask)
    missing[ras_axis] = tuple(int(i) for i in idx)
    return ViewVolume(array=array.astype(np.float32, copy=False), spacing=spacing, labels=lab,
                      affine=ras_affine(vol.affine, ornt, data.shape), missing=tuple(missing),  # type: ignore[arg-type]
                      warnings=tuple(vol.warnings))


def plane_slice(data: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2-D slice in display orientation: patient right on the image left, anterior / superior at the top."""
    axis = PLANES[plane]
    index = int(np.clip(index, 0, data.shape[axis] - 1))
    sl = np.take(data, index, axis=axis)  # axial: [x, y]; coronal: [x, z]; sagittal: [y, z]
    return sl.T[::-1, ::-1]


def pixel_spacing(volume: ViewVolume, plane: str) -> tuple[float, float]:
    """(row, column) spacing in mm of a displayed slice."""
    sx, sy, sz = volume.spacing
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def display_size(shape: tuple[int, int], spacing: tuple[float, float], width_px: int = 384) -> tuple[int, int]:
    """(width, height) in screen pixels so that one screen pixel covers the same millimetres along both axes."""
    rows, cols = shape
    height_mm, width_mm = rows * spacing[0], cols * spacing[1]
    return width_px, max(1, int(round(width_px * height_mm / width_mm)))


def render_plane(volume: ViewVolume, plane: str, index: int, level: float, width: float, show_labels: bool = True,
                 alpha: float = 0.4, width_px: int = 384,
                 box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """RGB image of one slice: windowed HU, optional label colours, slices missing from the series as a band of
    :data:`GAP_RGB`, resized to spacing-correct proportions; ``box`` (slice pixels, ``(c0, r0, c1, r1)``) outlined."""
    hu = plane_slice(volume.array, plane, index)
    gap = np.isnan(hu)
    gray = render.window(np.nan_to_num(hu, nan=-1024.0), level, width)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if show_labels and volume.labels is not None:
        rgb = render.blend_labels(rgb, plane_slice(volume.labels, plane, index), alpha)
    rgb[gap] = GAP_RGB
    size = display_size(gray.shape, pixel_spacing(volume, plane), width_px)
    out = render.resize(rgb, size, nearest=True)
    if box is not None:
        sx, sy = size[0] / gray.shape[1], size[1] / gray.shape[0]
        c0, r0, c1, r1 = box
        out = render.draw_box(out, (c0 * sx, r0 * sy, c1 * sx - 1, r1 * sy - 1), color=CROP_RGB)
    return out


def is_missing(volume: ViewVolume, plane: str, index: int) -> bool:
    """Whether the slice shown is one that the series lacks."""
    return int(index) in volume.missing[PLANES[plane]]


def labels_in_slice(volume: ViewVolume, plane: str, index: int) -> list[dict[str, object]]:
    """Structures visible in a slice: id, name, voxel count and colour (for the legend)."""
    from medvl.radiology.labels import label_name

    if volume.labels is None:
        return []
    sl = plane_slice(volume.labels, plane, index)
    ids, counts = np.unique(sl[sl > 0], return_counts=True)
    pal = render.label_palette(max(256, int(ids.max(initial=0)) + 1))
    return [{"id": int(i), "structure": label_name(int(i)), "voxels": int(c),
             "colour": "#{:02x}{:02x}{:02x}".format(*pal[int(i)])} for i, c in zip(ids, counts, strict=True)]
