"""DICOM series reading: a folder (or one file) of 2-D slices into a 3-D volume in Hounsfield units.

What this module guarantees, because CT models break silently when it goes wrong:

* a folder may hold several series: files are grouped by SeriesInstanceUID; a series is chosen by the caller or, by
  default, the largest CT series, and the choice is reported;
* slices are sorted by ImagePositionPatient projected on the slice normal (not by InstanceNumber or file name);
* the slice spacing comes from those positions, not from SliceThickness (which may differ from the step);
* RescaleSlope / RescaleIntercept (or a Modality LUT) are applied exactly once, per slice;
* compressed transfer syntaxes (JPEG 2000, JPEG lossless, RLE, ...) decode through pydicom's installed plugins;
* missing slices, irregular steps, duplicate positions, mixed image sizes and files without pixel data are detected.

Every identifying attribute is removed before anything leaves this module (see :mod:`medvl.io.deid`).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError, MissingDependencyError
from medvl.io.deid import Deidentifier, safe_metadata
from medvl.log import get_logger

log = get_logger(__name__)

__all__ = ["DicomSeries", "read_dicom_series", "scan_dicom", "select_series"]

#: relative tolerance on slice steps before the spacing counts as irregular
STEP_TOLERANCE = 0.01


@dataclass
class DicomSeries:
    """The image files of one series (headers only; pixels are read on demand).

    Attributes:
        uid: the de-identified (re-mapped) SeriesInstanceUID, safe to show and store.
        modality: DICOM Modality (CT, MR, ...).
        series_number: SeriesNumber when present.
        datasets: headers read with pixel data deferred, one per file.
    """

    uid: str
    raw_uid: str
    modality: str
    series_number: int | None
    datasets: list[Any] = field(repr=False)
    #: headers of files of this series that carry no pixel data (cut short, or damaged)
    broken: list[Any] = field(default_factory=list, repr=False)

    @property
    def n_files(self) -> int:
        return len(self.datasets)

    def summary(self) -> dict[str, Any]:
        sizes = sorted({(int(d.get("Rows", 0)), int(d.get("Columns", 0))) for d in self.datasets})
        return {
            "series_uid": self.uid,
            "series_number": self.series_number,
            "modality": self.modality,
            "files": self.n_files,
            "image_size": [list(s) for s in sizes],
        }


# ---------------------------------------------------------------------------------------------------- scanning
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_saved: tuple[Any, ...] = ()


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom warns and logs about malformed values by quoting them, and a quoted UID or name is an identifier:
    within this context its warnings are dropped, its logger is muted and its value validation is off.

    The settings are process-wide, so concurrent readers (app sessions are threads) share one reference count: the
    first to enter changes them and the last to leave restores them.
    """
    global _quiet_depth, _quiet_saved
    from pydicom import config

    logger = logging.getLogger("pydicom")
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            caught = warnings.catch_warnings()
            caught.__enter__()
            warnings.simplefilter("ignore")
            _quiet_saved = (caught, logger.disabled, config.settings.reading_validation_mode)
            logger.disabled, config.settings.reading_validation_mode = True, config.IGNORE
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                caught, disabled, mode = _quiet_saved
                logger.disabled, config.settings.reading_validation_mode = disabled, mode
                caught.__exit__(None, None, None)


def _dicom_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_header(path: Path, pydicom: Any) -> Any | None:
    try:
        return pydicom.dcmread(path, defer_size=4096)
    except (pydicom.errors.InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, struct.error):
        return None  # struct.error: a length field cut short by truncation


@_quiet_pydicom()
def scan_dicom(path: str | Path, deid: Any = None) -> tuple[list[DicomSeries], list[str]]:
    """Read the headers under ``path`` and group the image files by series.

    Returns:
        The image series (largest first) and warnings (non-DICOM files, objects without pixel data).

    Raises:
        InputError: the folder is empty, holds no DICOM file, or no DICOM file carries pixel data.
    """
    import pydicom

    deid = deid or Deidentifier()
    path = Path(path)
    files = _dicom_files(path)
    if not files:
        raise InputError(path, "empty folder: no files to read")
    groups: dict[str, list[Any]] = defaultdict(list)
    pixel_less: dict[str, list[Any]] = defaultdict(list)
    not_dicom: list[Path] = []
    for f in files:
        ds = _read_header(f, pydicom)
        if ds is None:
            not_dicom.append(f)
        elif "PixelData" not in ds:
            pixel_less[str(ds.get("SeriesInstanceUID", ""))].append(ds)
        else:
            groups[str(ds.get("SeriesInstanceUID", ""))].append(ds)
    if not groups:
        if pixel_less:
            n = sum(map(len, pixel_less.values()))
            raise InputError(path, f"{n} DICOM file(s) found but none carries pixel data (no image series)")
        raise InputError(path, f"no DICOM files found ({len(not_dicom)} file(s) could not be read as DICOM)")
    notes = []
    if not_dicom:
        notes.append(f"{len(not_dicom)} file(s) skipped, not readable as DICOM (damaged?): {_names(not_dicom)}")
    others = [ds for uid, dss in pixel_less.items() if uid not in groups for ds in dss]
    if others:
        notes.append(f"{len(others)} DICOM object(s) without pixel data skipped: {_names(others)}")
    series = [
        DicomSeries(
            uid=deid.remap_uid(uid) if uid else "",
            raw_uid=uid,
            modality=str(dss[0].get("Modality", "")),
            series_number=_int_or_none(dss[0].get("SeriesNumber")),
            datasets=dss,
            broken=pixel_less.get(uid, []),
        )
        for uid, dss in groups.items()
    ]
    series.sort(key=lambda s: (s.modality != "CT", -s.n_files))
    return series, notes


def select_series(series: list[DicomSeries], selector: str | None, path: Path) -> DicomSeries:
    """Pick a series by de-identified UID, original UID or SeriesNumber; default: the largest CT series.

    Raises:
        InputError: no series matches ``selector``, or (no selector) several series tie for the largest, e.g. two
            reconstruction kernels of one scan, where any default would be a silent guess.
    """
    known = ", ".join(f"{s.series_number} ({s.uid})" for s in series)
    if selector is None:
        ties = [s for s in series if (s.modality, s.n_files) == (series[0].modality, series[0].n_files)]
        if len(ties) > 1:
            raise InputError(path, f"{len(ties)} {series[0].modality or 'image'} series of {series[0].n_files} files "
                                   f"each: which one to read is ambiguous; choose one with --series "
                                   f"(series found, number (uid): {known})")
        return series[0]
    for s in series:
        if selector in (s.uid, s.raw_uid) or (s.series_number is not None and selector == str(s.series_number)):
            return s
    raise InputError(path, f"no series matches '{selector}'; series found (number (uid)): {known}")


# ---------------------------------------------------------------------------------------------------- geometry
@dataclass
class _Geometry:
    order: list[int]
    affine: np.ndarray
    warnings: list[str]


def _orientation(datasets: list[Any], path: Path) -> np.ndarray:
    iops = {tuple(np.round(np.asarray(d.ImageOrientationPatient, dtype=float), 4)) for d in datasets
            if "ImageOrientationPatient" in d}
    if not iops:
        raise InputError(path, "ImageOrientationPatient is missing: cannot place the slices in space")
    if len(iops) > 1:
        raise InputError(path, f"slices have {len(iops)} different ImageOrientationPatient values in one series")
    return np.asarray(next(iter(iops)), dtype=float)


def _check_sizes(datasets: list[Any], path: Path) -> None:
    sizes = {(int(d.Rows), int(d.Columns)) for d in datasets}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise InputError(path, f"mixed image sizes in one series ({listed}): not a single volume")
    spacings = {tuple(np.round(np.asarray(d.get("PixelSpacing", [1, 1]), dtype=float), 5)) for d in datasets}
    if len(spacings) > 1:
        raise InputError(path, f"mixed PixelSpacing in one series ({sorted(spacings)})")


def _step_warnings(steps: np.ndarray, dz: float) -> list[str]:
    notes = []
    off = np.abs(steps - dz) > STEP_TOLERANCE * dz + 1e-3
    if not off.any():
        return notes
    gaps = np.round(steps[off] / dz)
    if np.all(gaps >= 2) and np.allclose(steps[off], gaps * dz, rtol=STEP_TOLERANCE, atol=1e-3):
        missing = int((gaps - 1).sum())
        where = ", ".join(str(int(i) + 1) for i in np.flatnonzero(off)[:5])
        notes.append(f"missing slices: {missing} slice(s) absent (gaps after sorted slice {where}); step {dz:.3g} mm")
    else:
        notes.append(
            f"irregular slice spacing: steps range {steps.min():.3g}-{steps.max():.3g} mm (median {dz:.3g} mm)"
        )
    return notes


def _geometry(datasets: list[Any], path: Path) -> _Geometry:
    """Sort slices along the normal and build the voxel -> RAS affine (voxel order: column, row, slice)."""
    _check_sizes(datasets, path)
    iop = _orientation(datasets, path)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if any("ImagePositionPatient" not in d for d in datasets):
        raise InputError(path, "ImagePositionPatient is missing on some slices: cannot sort them in space")
    positions = np.array([np.asarray(d.ImagePositionPatient, dtype=float) for d in datasets])
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth = depth[order]
    notes: list[str] = []
    steps = np.diff(depth)
    if len(steps) and np.any(steps < 1e-3):
        dup = int((steps < 1e-3).sum())
        raise InputError(path, f"{dup} duplicate slice position(s): several acquisitions mixed in one series?")
    if len(steps):
        dz = float(np.median(steps))
        notes += _step_warnings(steps, dz)
        thickness = datasets[0].get("SliceThickness")
        if thickness is not None and abs(float(thickness) - dz) > STEP_TOLERANCE * dz + 1e-3:
            log.info("SliceThickness %.3g mm differs from the slice step %.3g mm; using the step", float(thickness), dz)
    else:
        dz = float(datasets[0].get("SliceThickness", 1.0) or 1.0)
        notes.append(f"single slice: z spacing taken from SliceThickness ({dz:.3g} mm)")
    row_spacing, col_spacing = (float(v) for v in datasets[0].get("PixelSpacing", [1.0, 1.0]))
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # along a row: next column
    lps[:3, 1] = col_dir * row_spacing  # down a column: next row
    lps[:3, 2] = normal * dz
    lps[:3, 3] = positions[order[0]]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM patient space is LPS; medvl (like NIfTI) uses RAS
    return _Geometry(order=[int(i) for i in order], affine=ras, warnings=notes)


# ---------------------------------------------------------------------------------------------------- pixels
def _slice_hu(ds: Any, path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    path = Path(ds.filename) if isinstance(getattr(ds, "filename", None), str) else path  # name the slice
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(path, "multi-frame DICOM images are not supported; convert to one slice per file")
    try:
        stored = ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = getattr(syntax, "name", str(syntax))
        if "plugin" in str(exc).lower() or "no pixel data decoders" in str(exc).lower():
            raise MissingDependencyError("pylibjpeg-openjpeg", feature=f"decoding {name}") from None
        raise InputError(path, f"cannot decode pixel data ({name}): {exc}") from None
    except (ValueError, EOFError, OSError, struct.error) as exc:
        raise InputError(path, f"pixel data unreadable or truncated: {exc}") from None
    if stored.ndim != 2:
        raise InputError(path, f"expected 2-D grayscale slices, got pixel array of shape {stored.shape}")
    # Modality LUT = RescaleSlope/Intercept (or a LUT sequence), applied once here and nowhere else
    return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)


@_quiet_pydicom()
def read_dicom_series(
    path: str | Path, series: str | None = None, deid: Any = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Read one series into an HU array.

    Args:
        path: a folder of DICOM files (searched recursively) or one DICOM file.
        series: SeriesNumber or SeriesInstanceUID (original or de-identified) to read; default the largest CT series.
        deid: a :class:`~medvl.io.deid.Deidentifier` (the default key when omitted).

    Returns:
        ``(array, affine, meta, warnings)``: float32 HU indexed (column, row, slice), the voxel -> RAS mm affine, the
        de-identified metadata, and what was found wrong with the input.
    """
    path = Path(path)
    deid = deid or Deidentifier()
    found, notes = scan_dicom(path, deid)
    chosen = select_series(found, series, path)
    if len(found) > 1:
        notes.append(
            f"{len(found)} series found; read series {chosen.series_number} ({chosen.uid}, {chosen.n_files} files)"
            + ("" if series else ": the largest CT series; choose another with --series")
        )
    geom = _geometry(chosen.datasets, path)
    if chosen.broken:
        notes.append(_broken_note(chosen))
    first_ds = chosen.datasets[geom.order[0]]
    # filled slice by slice: one volume in memory, not a list of slices plus their stack
    array = np.empty((int(first_ds.Columns), int(first_ds.Rows), len(geom.order)), dtype=np.float32)
    for k, i in enumerate(geom.order):
        array[:, :, k] = _slice_hu(chosen.datasets[i], path).T
    first = chosen.datasets[geom.order[0]]
    meta = safe_metadata(first, deid)
    syntax = first.file_meta.get("TransferSyntaxUID")
    meta.update(
        {
            "format": "dicom",
            "transfer_syntax": getattr(syntax, "name", str(syntax)),
            "n_slices": int(array.shape[2]),
            "series_number": chosen.series_number,
            "series_found": [s.summary() for s in found],
            "rescale": _rescale_summary(chosen.datasets),
        }
    )
    return array, geom.affine, meta, notes + geom.warnings


def _names(items: list[Any], shown: int = 3) -> str:
    names = [Path(getattr(i, "filename", i)).name for i in items]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _broken_note(series: DicomSeries) -> str:
    """A "missing slices" warning for files of the series without pixel data, saying where they sit."""
    where = "position unknown"
    iop = np.asarray(series.datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    depths = [float(np.asarray(d.ImagePositionPatient, dtype=float) @ normal) for d in series.broken
              if "ImagePositionPatient" in d]
    if depths:
        read = [float(np.asarray(d.ImagePositionPatient, dtype=float) @ normal) for d in series.datasets]
        lo, hi = min(read), max(read)
        edge = any(d < lo or d > hi for d in depths)
        where = "at an edge of the series" if edge else "inside the series"
    return (f"missing slices: {len(series.broken)} file(s) of the series carry no pixel data, truncated or damaged "
            f"({where}): {_names(series.broken)}; the volume has only the {series.n_files} readable slices")


def _rescale_summary(datasets: list[Any]) -> dict[str, Any]:
    slopes = {float(d.get("RescaleSlope", 1) or 1) for d in datasets}
    intercepts = {float(d.get("RescaleIntercept", 0) or 0) for d in datasets}
    return {
        "slope": sorted(slopes)[0] if len(slopes) == 1 else sorted(slopes),
        "intercept": sorted(intercepts)[0] if len(intercepts) == 1 else sorted(intercepts),
        "applied": "once, per slice (DICOM Modality LUT)",
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
