"""The de-identified patient and study that medvl's DICOM results belong to.

medvl's outputs never carry the source's identifiers (DICOM PS3.15 Basic Profile, :mod:`medvl.io.deid`). For a
case whose source is not DICOM (a slide file, a NIfTI volume, a feature or embedding file) the patient is a
pseudonym derived from the case (keyed hash; the same case always gets the same one) and the study UID is derived
the same way, so the SR and the SEG of one case fall in one study. Where the source is DICOM, the objects reference
it through the de-identified (consistently re-mapped) UIDs and copy no patient attribute from it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from medvl import __version__
from medvl.io.deid import DeidConfig, Deidentifier

__all__ = ["MANUFACTURER", "SOFTWARE", "pseudonym", "subject_dataset"]

MANUFACTURER = "medvl"
SOFTWARE = f"medvl {__version__}"


def pseudonym(case_key: str, config: DeidConfig | None = None) -> str:
    """``medvl-<12 hex>``: a keyed hash of the case (its file name or id), never the name itself."""
    key = ((config or DeidConfig()).key or "medvl-deid").encode()
    return "medvl-" + hmac.new(key, f"case:{case_key}".encode(), hashlib.sha256).hexdigest()[:12]


def subject_dataset(case_key: str, modality: str, config: DeidConfig | None = None) -> Any:
    """A pydicom ``Dataset`` with the pseudonymous patient and study attributes of one case (no pixel data).

    highdicom copies patient and study attributes from the evidence of a document; this dataset is that evidence
    where the source is not a DICOM instance.
    """
    from pydicom.dataset import Dataset

    deid = Deidentifier(config)
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = pseudonym(case_key, config)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = deid.remap_uid(f"medvl.study.{case_key}")
    ds.StudyID = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "medvl PS3.15 Basic Application Level Confidentiality Profile"
    return ds
