"""The CT region the model saw (its preprocessing's organ crop / pad grid) as a DICOM SEG of the source series.

A SEG references the images it segments. For a DICOM series those are its slices, de-identified (the Basic Profile
re-maps every UID consistently, so the SEG references the de-identified series, written beside it). A NIfTI volume
has no DICOM images; following the standard's rule that a SEG's source be DICOM images, medvl writes the volume it
read as a de-identified CT series (same voxels, geometry and HU) and the SEG references that series. The segment is
every source voxel whose centre lies in the chain's output grid (category SCT 91723000 "Anatomical Structure",
type DCM 130047 "Volume of interest").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_dir, atomic_path
from medvl.errors import InputError, require
from medvl.io.deid import Deidentifier
from medvl.tasks.interop.subject import MANUFACTURER, SOFTWARE, subject_dataset

__all__ = ["crop_mask", "ct_source_series", "ct_segmentation", "write_ct_seg"]

_LPS = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS (DICOM patient coordinates)
_CATEGORY = ("91723000", "SCT", "Anatomical Structure")
_TYPE = ("130047", "DCM", "Volume of interest")
_ALGORITHM_FAMILY = ("110001", "DCM", "Image Processing")


def _slice_centres(ds: Any) -> np.ndarray:
    """RAS world coordinates (mm) of the pixel centres of one DICOM slice, ``[rows, cols, 3]``."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    dr, dc = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
    rows, cols = np.mgrid[0:int(ds.Rows), 0:int(ds.Columns)]
    lps = ipp + cols[..., None] * dc * iop[:3] + rows[..., None] * dr * iop[3:]
    return lps * _LPS


def crop_mask(datasets: list[Any], grid_affine: np.ndarray, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """Bool ``[slices, rows, cols]``: source pixels whose centre falls inside the grid's voxels (edges included)."""
    inverse = np.linalg.inv(np.asarray(grid_affine, dtype=np.float64))
    upper = np.asarray(grid_shape, dtype=np.float64) - 0.5
    frames = []
    for ds in datasets:
        ras = _slice_centres(ds)
        idx = ras @ inverse[:3, :3].T + inverse[:3, 3]
        frames.append(np.all((idx >= -0.5) & (idx <= upper), axis=-1))
    return np.stack(frames)


def ct_source_series(volume: Any, case_key: str) -> list[Any]:
    """A de-identified CT series (one dataset per axial slice along the volume's third axis) of a volume's voxels.

    Rows run along the array's second axis and columns along its first, so the pixel grid is the volume's own.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    hd = require("highdicom", "interop", "DICOM SEG output")
    subject = subject_dataset(case_key, "CT")
    deid = Deidentifier()
    affine = np.asarray(volume.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    row_dir, col_dir = affine[:3, 0] / spacing[0] * _LPS, affine[:3, 1] / spacing[1] * _LPS
    series_uid, frame_uid = deid.remap_uid(f"medvl.ct-source.{case_key}"), deid.remap_uid(f"medvl.for.{case_key}")
    hu = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    out = []
    for k in range(hu.shape[2]):
        ds = subject_dataset(case_key, "CT")
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, hd.UID()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = subject.StudyInstanceUID, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 903, k + 1, MANUFACTURER
        ds.ImageType, ds.PositionReferenceIndicator = ["DERIVED", "SECONDARY", "AXIAL"], ""
        ds.ImageOrientationPatient = [*np.round(row_dir, 8), *np.round(col_dir, 8)]
        ds.ImagePositionPatient = list(np.round((affine @ [0.0, 0.0, k, 1.0])[:3] * _LPS, 5))
        ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]
        ds.SliceThickness = round(float(spacing[2]), 6)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.KVP = ""
        ds.AcquisitionNumber = 1
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()
        ds.SeriesDescription = "medvl CT volume as read (segmentation source)"
        out.append(ds)
    return out


#: patient and study attributes a de-identified copy takes from the case's pseudonymous subject (the profile blanks
#: or removes them; highdicom needs them present)
_SUBJECT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                     "StudyTime", "AccessionNumber", "ReferringPhysicianName")


def dicom_source_series(path: Path, case_key: str, series: str | None = None) -> list[Any]:
    """The slices of a DICOM series, read whole and de-identified (UIDs re-mapped as medvl's reader does; the
    patient is the case's pseudonym)."""
    import pydicom

    from medvl.io.dicom import scan_dicom, select_series

    chosen = select_series(scan_dicom(path)[0], series, path)
    deid = Deidentifier()
    subject = subject_dataset(case_key, "CT")
    out = []
    for header in chosen.datasets:
        ds = deid.dataset(pydicom.dcmread(header.filename))
        for keyword in _SUBJECT_KEYWORDS:
            setattr(ds, keyword, subject.get(keyword))
        out.append(ds)
    return out


def ct_segmentation(datasets: list[Any], mask: np.ndarray, case_key: str, label: str) -> Any:
    """A binary SEG of ``mask`` (``[slices, rows, cols]`` in the order of ``datasets``) referencing them."""
    hd = require("highdicom", "interop", "DICOM SEG output")
    algorithm = hd.AlgorithmIdentificationSequence(name="medvl CT preprocessing", version=SOFTWARE,
                                                   family=hd.sr.CodedConcept(*_ALGORITHM_FAMILY))
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label[:64], segmented_property_category=hd.sr.CodedConcept(*_CATEGORY),
        segmented_property_type=hd.sr.CodedConcept(*_TYPE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
        series_instance_uid=Deidentifier().remap_uid(f"medvl.ct-seg.{case_key}"),
        series_number=904, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="medvl", software_versions=SOFTWARE, device_serial_number="0",
        omit_empty_frames=False)
    seg.SeriesDescription = "medvl model input region (research)"
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "medvl PS3.15 Basic Application Level Confidentiality Profile"
    return seg


def write_ct_seg(out_dir: str | Path, source: str | Path, config: Any, labels: str | Path | None = None,
                 series: str | None = None) -> dict[str, Any]:
    """Write ``<out>/<case>_seg.dcm`` (the model-input region) and ``<out>/<case>_source/`` (its source series).

    Raises:
        InputError: the chain refuses the scan (an organ crop without a label map, ...); nothing is written.
    """
    from medvl.io.volume import load_volume
    from medvl.radiology.cases import case_id_for
    from medvl.radiology.transforms import run_chain

    source = Path(source)
    if config.organ_crop is not None and labels is None:
        raise InputError(source, "this preprocessing crops around an organ: give the scan's label map (--labels)")
    volume = load_volume(source, series)
    _, grid_affine = run_chain(volume, config, load_volume(labels) if labels is not None else None)
    case = case_id_for(source)
    datasets = dicom_source_series(source, case, series) if source.is_dir() else ct_source_series(volume, case)
    mask = crop_mask(datasets, grid_affine, tuple(int(v) for v in config.spatial_size))
    if not mask.any():
        raise InputError(source, "the preprocessing's grid does not overlap the scan")
    seg = ct_segmentation(datasets, mask, case, "model input (preprocessing crop)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / f"{case}_source"
    with atomic_dir(folder) as tmp:
        for i, ds in enumerate(datasets):
            ds.save_as(Path(tmp) / f"{i + 1:04d}.dcm", enforce_file_format=True)
    seg_path = out_dir / f"{case}_seg.dcm"
    with atomic_path(seg_path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return {"dicom_seg": str(seg_path), "dicom_seg_source": str(folder), "slices": len(datasets),
            "segment_voxels": int(mask.sum())}
