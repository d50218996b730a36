"""A DICOM SEG on a DICOM whole-slide image: the masks reference the WSI's own (de-identified) instances.

The segments are written on the pixel matrix of the coarsest VOLUME level of the WSI series (TILED_FULL tiles, as
highdicom lays them out from the total pixel matrix), resampled from the tissue mask's grid by nearest neighbour.
The source instance is de-identified like every medvl output: its UIDs are re-mapped consistently (the SEG
references the de-identified WSI), and the patient is the case's pseudonym.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError, require
from medvl.io.deid import Deidentifier
from medvl.tasks.interop.subject import MANUFACTURER, SOFTWARE, subject_dataset

__all__ = ["coarsest_volume_instance", "wsi_segmentation"]

_WSI_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
_SUBJECT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                     "StudyTime", "AccessionNumber", "ReferringPhysicianName")


def coarsest_volume_instance(path: Path) -> Any:
    """The header of the smallest VOLUME-type WSI instance under ``path`` (a folder or one file)."""
    import pydicom

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    best = None
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - other files of the folder (not DICOM) are skipped
            continue
        if ds.get("SOPClassUID") != _WSI_CLASS or "VOLUME" not in list(ds.get("ImageType", [])):
            continue
        if best is None or int(ds.TotalPixelMatrixColumns) < int(best.TotalPixelMatrixColumns):
            best = ds
    if best is None:
        raise InputError(path, "no VL whole-slide VOLUME instance found")
    return best


def _resample(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    r = np.minimum((np.arange(rows) + 0.5) * mask.shape[0] / rows, mask.shape[0] - 1).astype(int)
    c = np.minimum((np.arange(cols) + 0.5) * mask.shape[1] / cols, mask.shape[1] - 1).astype(int)
    return mask[np.ix_(r, c)]


def _deidentified(ds: Any, case_key: str) -> Any:
    deid = Deidentifier()
    out = deid.dataset(ds)
    subject = subject_dataset(case_key, "SM")
    for keyword in _SUBJECT_KEYWORDS:
        setattr(out, keyword, subject.get(keyword))
    return out


def wsi_segmentation(path: Path, masks: list[np.ndarray], segments: list[Any], case_key: str) -> tuple[Any, Any]:
    """The de-identified source header and the SEG of ``masks`` (bool, on any grid covering the whole slide).

    Args:
        path: the DICOM WSI folder or file.
        masks: one bool mask per segment, covering the whole slide.
        segments: highdicom ``SegmentDescription`` per mask.
        case_key: the slide's id (hashed into pseudonyms and UIDs).
    """
    hd = require("highdicom", "interop", "DICOM SEG output")
    source = _deidentified(coarsest_volume_instance(path), case_key)
    rows, cols = int(source.TotalPixelMatrixRows), int(source.TotalPixelMatrixColumns)
    pixels = np.stack([_resample(m, rows, cols) for m in masks], axis=-1).astype(np.uint8)[None]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=Deidentifier().remap_uid(f"medvl.wsi-seg.{case_key}"),
        series_number=905, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="medvl", software_versions=SOFTWARE, device_serial_number="0",
        tile_pixel_array=True, omit_empty_frames=False)
    seg.SeriesDescription = "medvl tissue and heatmap segments (research)"
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "medvl PS3.15 Basic Application Level Confidentiality Profile"
    return source, seg
