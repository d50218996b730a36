"""Missing slices of a DICOM series, placed where they belong for display.

:func:`medvl.io.load_volume` stacks a series' slices in the order of their positions along the slice normal and
reports gaps as a warning; the array itself has no room for the absent slices, so slices after a gap would be drawn
one step too close. For the viewer, :func:`fill_gaps` puts every slice at its true position on the grid of the
series' slice step (the grid the volume's affine describes, from the first slice) and leaves the absent positions
empty (NaN, drawn as a visible band), so coronal and sagittal planes show the gap at its true height.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SliceGaps", "fill_gaps", "slice_gaps"]

#: relative tolerance on a step being a whole number of slice steps (as the DICOM reader uses)
STEP_TOLERANCE = 0.01


@dataclass(frozen=True)
class SliceGaps:
    """Where each stored slice belongs on the regular grid (``positions``) and how many grid slices there are."""

    positions: tuple[int, ...]
    n_grid: int

    @property
    def missing(self) -> tuple[int, ...]:
        """Grid indices with no slice."""
        have = set(self.positions)
        return tuple(i for i in range(self.n_grid) if i not in have)


def slice_gaps(path: str | Path, series: str | None = None) -> SliceGaps | None:
    """The gaps of a DICOM series folder (headers only), or None when it is not DICOM, has no gap, or its steps are
    not whole multiples of one slice step (irregular spacing cannot be placed on a grid)."""
    from medvl.errors import MedvlError
    from medvl.io.dicom import scan_dicom, select_series

    path = Path(path)
    if not path.is_dir():
        return None
    try:
        found, _ = scan_dicom(path)
        chosen = select_series(found, series, path)
        iop = np.asarray(chosen.datasets[0].ImageOrientationPatient, dtype=float)
        positions = np.array([np.asarray(d.ImagePositionPatient, dtype=float) for d in chosen.datasets])
    except (MedvlError, AttributeError, ValueError, TypeError):
        return None  # the reader reports what is wrong with the series
    depth = np.sort(positions @ np.cross(iop[:3], iop[3:]))
    return gaps_from_depths(depth)


def gaps_from_depths(depth: np.ndarray) -> SliceGaps | None:
    """Grid positions of sorted slice depths (mm along the normal); None without a gap or on irregular steps."""
    steps = np.diff(np.asarray(depth, dtype=float))
    if len(steps) == 0:
        return None
    dz = float(np.median(steps))
    if dz <= 0:
        return None
    k = np.round(steps / dz)
    if not np.allclose(steps, k * dz, rtol=STEP_TOLERANCE, atol=1e-3) or np.all(k == 1) or np.any(k < 1):
        return None
    positions = np.concatenate([[0], np.cumsum(k)]).astype(int)
    return SliceGaps(positions=tuple(int(p) for p in positions), n_grid=int(positions[-1]) + 1)


def fill_gaps(array: np.ndarray, gaps: SliceGaps, fill: float = np.nan) -> np.ndarray:
    """The stored slices (last axis, in position order) on the full grid, ``fill`` at the missing positions."""
    out = np.full((*array.shape[:2], gaps.n_grid), fill, dtype=np.result_type(array.dtype, np.float32)
                  if np.isnan(fill) else array.dtype)
    out[:, :, list(gaps.positions)] = array
    return out
