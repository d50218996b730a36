"""Write real DICOM CT series (pydicom) from a NIfTI volume, for reader and PHI tests."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from medvl.resources import bundled

#: identifiers written into the PHI test series (none may appear in any medvl output)
PHI = {
    "PatientName": "Zyxwut^Quorblen",
    "PatientID": "MRN-99817263",
    "PatientBirthDate": "19410317",
    "AccessionNumber": "ACC-55120934",
    "InstitutionName": "Saint Vrexmoor Hospital",
    "ReferringPhysicianName": "Plimbott^Ardenne",
    "StudyDate": "20190611",
}

SLOPE, INTERCEPT = 0.5, -2048.0


def lps_geometry(affine_ras: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[bool, bool]]:
    """LPS affine of the array after flipping x/y so the rows run along +L and the columns along +P (usual axial)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    flips = []
    for axis in (0, 1):
        flip = lps[axis, axis] < 0
        if flip:
            lps[:3, 3] += lps[:3, axis] * (shape[axis] - 1)
            lps[:3, axis] *= -1
        flips.append(bool(flip))
    return lps, (flips[0], flips[1])


def write_ct_series(
    out: Path,
    nifti: Path,
    *,
    slices: range | None = None,
    compress: bool = False,
    phi: dict | None = None,
    series_number: int = 1,
    modality: str = "CT",
    drop: tuple[int, ...] = (),
    shuffle_seed: int = 0,
    slice_thickness: float = 2.0,
    study_uid: str | None = None,
) -> Path:
    """Write one slice per file, in shuffled file order with random names; returns ``out``."""
    img = nib.load(str(nifti))
    hu = np.asarray(img.get_fdata(), dtype=np.float64)
    lps, (fx, fy) = lps_geometry(img.affine, hu.shape)
    if fx:
        hu = hu[::-1]
    if fy:
        hu = hu[:, ::-1]
    stored = np.round((hu - INTERCEPT) / SLOPE).astype(np.uint16)
    out.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), study_uid or generate_uid(), generate_uid()
    ks = [k for k in (slices or range(hu.shape[2])) if k not in drop]
    rng = random.Random(shuffle_seed)
    names = [f"IM{rng.randrange(10**8):08d}" for _ in ks]
    for instance, (k, name) in enumerate(zip(ks, names, strict=True), start=1):
        ds = _slice_dataset(stored[:, :, k].T, lps, k, modality, phi or {}, slice_thickness)
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series_uid, study_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = series_number, len(ks) - instance + 1  # reversed: must not matter
        if compress:
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(out / f"{name}.dcm", enforce_file_format=True)
    return out


def _slice_dataset(pixels: np.ndarray, lps: np.ndarray, k: int, modality: str, phi: dict, thickness: float):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for key, value in phi.items():
        setattr(ds, key, value)
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*lps[:3, 0] / np.linalg.norm(lps[:3, 0]),
                                                       *lps[:3, 1] / np.linalg.norm(lps[:3, 1]))]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in lps[:3, 3] + lps[:3, 2] * k]
    ds.PixelSpacing = [f"{np.linalg.norm(lps[:3, 1]):g}", f"{np.linalg.norm(lps[:3, 0]):g}"]
    ds.SliceThickness = f"{thickness:g}"  # deliberately different from the step: the reader must not use it
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{SLOPE:g}", f"{INTERCEPT:g}", "HU"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


# ---------------------------------------------------------------------------- fixtures (imported by conftest)
@pytest.fixture(scope="session")
def ct_small() -> Path:
    return bundled("ct_small")


@pytest.fixture(scope="session")
def ct_labels() -> Path:
    return bundled("ct_labels")


@pytest.fixture(scope="session")
def dicom_series(tmp_path_factory) -> Path:
    """The bundled ct_small as an uncompressed CT series (slope 0.5, intercept -2048), with identifiers."""
    return write_ct_series(tmp_path_factory.mktemp("dcm") / "series", bundled("ct_small"), phi=PHI)


@pytest.fixture(scope="session")
def dicom_j2k(tmp_path_factory) -> Path:
    """Ten slices of ct_small as a JPEG 2000 lossless series."""
    return write_ct_series(tmp_path_factory.mktemp("j2k") / "series", bundled("ct_small"), slices=range(10),
                           compress=True)
