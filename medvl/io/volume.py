"""Volume loading: a DICOM series folder or a NIfTI file into float32 Hounsfield units with its geometry.

Readers sit behind one small interface (``can_read`` / ``read``) in a table, :data:`READERS`; :func:`load_volume`
picks the first that accepts the path. Every reader returns the array in the voxel order of its affine, with the
affine mapping voxel indices to RAS millimetres (the NIfTI convention; DICOM LPS positions are converted).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medvl.errors import InputError, reason

__all__ = ["READERS", "Volume", "VolumeReader", "load_volume", "require_ct", "volume_info"]


@dataclass
class Volume:
    """A 3-D image with its geometry and de-identified metadata.

    Attributes:
        array: float32 intensities (HU for CT), indexed like the affine's voxel axes (i, j, k).
        affine: 4x4 voxel index -> RAS world millimetres.
        meta: de-identified metadata (no patient identifiers), JSON-able.
        warnings: problems found while reading (missing slices, irregular spacing, series choice).
        source: the path read.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along the array axes in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Axis codes of the array axes (e.g. ``"RAS"``: axis 0 points right, 1 anterior, 2 superior)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def modality(self) -> str | None:
        return self.meta.get("Modality") or None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)


class VolumeReader:
    """One way of reading volumes: ``can_read(path)`` and ``read(path, series) -> Volume``."""

    name: ClassVar[str] = ""

    def can_read(self, path: Path) -> bool:
        raise NotImplementedError

    def read(self, path: Path, series: str | None = None, deid: Any = None) -> Volume:
        raise NotImplementedError


class NiftiReader(VolumeReader):
    """NIfTI-1/2 through nibabel; the affine (sform/qform) and the scaling (scl_slope) are honoured once."""

    name = "nifti"

    def can_read(self, path: Path) -> bool:
        return path.is_file() and path.name.lower().endswith((".nii", ".nii.gz"))

    def read(self, path: Path, series: str | None = None, deid: Any = None) -> Volume:
        import nibabel as nib

        nib_log = nib.imageglobals.logger
        level = nib_log.level
        nib_log.setLevel(logging.CRITICAL + 1)  # nibabel prints header repairs on stderr; the error line says it
        try:
            img = nib.load(str(path))
            data = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InputError(path, f"truncated or corrupt compressed NIfTI ({exc})") from None
        except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, ValueError, OSError,
                OverflowError, MemoryError) as exc:  # damaged header fields: bad data code, negative or huge dims
            raise InputError(path, f"cannot read NIfTI: {str(exc) or type(exc).__name__}") from None
        finally:
            nib_log.setLevel(level)
        data = _squeeze_to_3d(data, path)
        nan = int(np.isnan(data).sum())
        if nan:
            raise InputError(path, f"contains {nan} NaN voxel(s); CT intensities must be finite HU values")
        if not np.isfinite(data).all():
            raise InputError(path, "contains infinite voxel values")
        slope, inter = img.header.get_slope_inter()
        meta = {
            "format": "nifti",
            "stored_dtype": str(img.get_data_dtype()),
            "rescale": {"slope": slope, "intercept": inter, "applied": "once (nibabel scl_slope/scl_inter)"},
        }
        return Volume(array=data, affine=np.asarray(img.affine, dtype=np.float64), meta=meta, source=str(path))


class DicomReader(VolumeReader):
    """A folder of DICOM slices; see :mod:`medvl.io.dicom`. One DICOM file is refused with a hint to give its
    folder (a single slice read as a "volume" would pass silently as a one-slice CT)."""

    name = "dicom"

    def can_read(self, path: Path) -> bool:
        if path.is_dir():
            return True
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(132)
        return path.suffix.lower() in (".dcm", ".dicom") or head[128:132] == b"DICM"

    def read(self, path: Path, series: str | None = None, deid: Any = None) -> Volume:
        import struct

        from pydicom.errors import BytesLengthException

        from medvl.io.dicom import read_dicom_series

        if path.is_file():
            _refuse_single_slice(path)
        try:
            array, affine, meta, notes = read_dicom_series(path, series=series, deid=deid)
        except (ValueError, TypeError, NotImplementedError, KeyError, IndexError, AttributeError,
                BytesLengthException, struct.error) as exc:
            # pydicom parses header values lazily: a damaged element (unknown VR, non-numeric DS, wrong type)
            # surfaces here, wherever the reader first touches it
            raise InputError(path, f"damaged DICOM header ({reason(exc)})") from None
        return Volume(array=array, affine=affine, meta=meta, warnings=notes, source=str(path))


def _refuse_single_slice(path: Path) -> None:
    """A CT series is a folder of slices: one file given instead is an error with the folder to give."""
    siblings = sum(1 for p in path.parent.iterdir() if p.is_file() and p != path and not p.name.startswith("."))
    there = f" ({siblings} other file(s) there)" if siblings else ""
    raise InputError(path, f"one DICOM file, not a series: a CT volume is read from the folder that holds all its "
                           f"slices; give the folder instead, e.g. {path.parent}{there}")


#: readers tried in order
READERS: list[VolumeReader] = [NiftiReader(), DicomReader()]


def load_volume(path: str | Path, series: str | None = None, *, deid: Any = None) -> Volume:
    """Read a CT (or other) volume from a DICOM folder/file or a NIfTI file.

    Args:
        path: DICOM series folder or ``.nii`` / ``.nii.gz`` (one DICOM file is refused: give its folder).
        series: for DICOM folders holding several series: SeriesNumber or SeriesInstanceUID to read.
        deid: a :class:`~medvl.io.deid.Deidentifier` (controls the UID re-mapping key and dates).

    Raises:
        InputError: missing path, unknown format, or a broken file (the message names the problem).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    for reader in READERS:
        if reader.can_read(path):
            volume = reader.read(path, series=series, deid=deid)
            volume.meta.setdefault("reader", reader.name)
            return volume
    raise InputError(path, "not a volume medvl can read (expected a DICOM series folder or .nii/.nii.gz)")


def require_ct(volume: Volume, allow_non_ct: bool = False) -> Volume:
    """Refuse a non-CT DICOM series for CT models (HU windows mean nothing for MR or PET).

    NIfTI files carry no modality and are taken as CT.
    """
    modality = volume.modality
    if modality not in (None, "CT") and not allow_non_ct:
        raise InputError(
            volume.source,
            f"modality is {modality}, not CT: CT models expect Hounsfield units "
            "(pass --allow-non-ct if you know the intensities are comparable)",
        )
    return volume


def volume_info(volume: Volume) -> dict[str, Any]:
    """The summary ``medvl ct info`` prints: shape, spacing (x, y, z mm), orientation, HU range, series, warnings."""
    arr = volume.array
    info = {
        "path": volume.source,
        "format": volume.meta.get("format"),
        "modality": volume.modality or "unknown (NIfTI: taken as CT)",
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "orientation": volume.orientation,
        "hu_min": float(arr.min()),
        "hu_max": float(arr.max()),
        "slices": int(volume.meta.get("n_slices", volume.shape[2])),
        "series_found": volume.meta.get("series_found", []),
        "warnings": list(volume.warnings),
    }
    if "transfer_syntax" in volume.meta:
        info["transfer_syntax"] = volume.meta["transfer_syntax"]
    return info


def _squeeze_to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {data.shape}")
    return data
