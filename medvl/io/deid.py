"""De-identification of DICOM metadata (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile).

medvl never keeps a raw DICOM header. Whatever it stores, logs or exports passes through :class:`Deidentifier`, which
applies the profile's actions to the identifying attributes it lists:

* ``X`` remove the attribute,
* ``Z`` keep the attribute with an empty value,
* ``D`` replace it with a dummy value,
* ``U`` re-map a UID to a new one, consistently (the same input UID always gives the same output UID under one key).

Dates are removed (the profile's default) or, with ``date_mode="shift"``, shifted by a per-patient number of days
derived from a keyed hash, which keeps intervals between a patient's studies. Private attributes are removed.

The table below lists the attributes of the profile that occur in CT series; it was written from the standard's
attribute list, not copied from another implementation.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from typing import Any, Literal

from medvl.config import Config, dataclass

__all__ = ["BASIC_PROFILE", "DeidConfig", "Deidentifier", "safe_metadata", "SAFE_KEYWORDS"]

#: keyword -> action (PS3.15 Table E.1-1, Basic Profile column), for the attributes found in CT headers
BASIC_PROFILE: dict[str, str] = {
    # patient
    "PatientName": "Z",
    "PatientID": "Z",
    "IssuerOfPatientID": "X",
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientSex": "Z",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "PatientBirthName": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "AdditionalPatientHistory": "X",
    "PatientComments": "X",
    "MedicalRecordLocator": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientReligiousPreference": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "PregnancyStatus": "X",
    "SmokingStatus": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmissionID": "X",
    # study, visit and request
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDate": "Z",
    "StudyTime": "Z",
    "StudyDescription": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureDescription": "X",
    "RequestAttributesSequence": "X",
    "ReasonForStudy": "X",
    "RequestedContrastAgent": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedProcedureStepDescription": "X",
    "ScheduledProcedureStepStartDate": "X",
    "ScheduledProcedureStepEndDate": "X",
    "ImageComments": "X",
    "StudyComments": "X",
    "DerivationDescription": "X",
    "ProtocolName": "X",
    "SeriesDescription": "X",
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "ContentDate": "Z",
    "ContentTime": "Z",
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "OverlayDate": "X",
    "OverlayTime": "X",
    "CurveDate": "X",
    "CurveTime": "X",
    "ContrastBolusStartTime": "X",
    "ContrastBolusStopTime": "X",
    "TimezoneOffsetFromUTC": "X",
    # people and places
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "StationName": "X",
    "OperatorsName": "X",
    "PerformingPhysicianName": "X",
    "PhysiciansOfRecord": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "DeviceSerialNumber": "X",
    "PlateID": "X",
    "DetectorID": "X",
    "GantryID": "X",
    "CassetteID": "X",
    # UIDs
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "MediaStorageSOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "IrradiationEventUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "InstanceCreatorUID": "U",
    "StorageMediaFileSetUID": "U",
    "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U",
    "ReferencedFrameOfReferenceUID": "U",
}

#: technical, non-identifying attributes medvl keeps in a volume's metadata (everything else is dropped)
SAFE_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "KVP",
    "ConvolutionKernel",
    "SliceThickness",
    "PixelSpacing",
    "ImageOrientationPatient",
    "RescaleType",
    "PhotometricInterpretation",
    "BitsStored",
    "SamplesPerPixel",
    "ContrastBolusAgent",
    # identifiers kept only after the profile re-mapped (U) or blanked (Z) them
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "StudyDate",
    "PatientSex",
)

_DATE_KEYWORDS = ("StudyDate", "ContentDate")


@dataclass
class DeidConfig(Config):
    """How identifiers are removed.

    Attributes:
        key: secret mixed into UID re-mapping and date shifts; keep it private and constant across a cohort so that
            re-mapped UIDs stay consistent between runs (empty: a fixed project-wide key).
        date_mode: ``"remove"`` blanks dates (profile default); ``"shift"`` moves them by a per-patient offset.
        max_shift_days: largest shift, in days, under ``date_mode="shift"``.
        uid_root: root of generated UIDs (``2.25`` is the UUID-derived root that needs no registration).
    """

    key: str = ""
    date_mode: Literal["remove", "shift"] = "remove"
    max_shift_days: int = 365
    uid_root: str = "2.25"


class Deidentifier:
    """Applies the Basic Profile to pydicom datasets and header dictionaries."""

    def __init__(self, config: DeidConfig | None = None):
        self.config = config or DeidConfig()
        self._key = (self.config.key or "medvl-deid").encode("utf-8")

    # ------------------------------------------------------------------ identifiers
    def remap_uid(self, uid: str) -> str:
        """A new UID for ``uid``: the same input always gives the same output under one key."""
        if not uid:
            return ""
        digest = hmac.new(self._key, str(uid).encode("ascii", "ignore"), hashlib.sha256).digest()
        return f"{self.config.uid_root}.{int.from_bytes(digest[:16], 'big')}"

    def shift_days(self, patient_id: str) -> int:
        """Days to add to every date of one patient (non-zero, within ``max_shift_days``)."""
        digest = hmac.new(self._key, b"date:" + str(patient_id).encode(), hashlib.sha256).digest()
        return -(1 + int.from_bytes(digest[:4], "big") % self.config.max_shift_days)

    def _date(self, value: Any, patient_id: str) -> str:
        if self.config.date_mode == "remove" or not value:
            return ""
        try:
            day = _dt.datetime.strptime(str(value)[:8], "%Y%m%d").date()
        except ValueError:
            return ""
        return (day + _dt.timedelta(days=self.shift_days(patient_id))).strftime("%Y%m%d")

    # ------------------------------------------------------------------ datasets
    def dataset(self, ds: Any) -> Any:
        """De-identify a pydicom ``Dataset`` in place (also nested sequences) and return it."""
        patient_id = str(ds.get("PatientID", ""))
        ds.remove_private_tags()
        for elem in list(ds):
            if elem.VR == "SQ":
                for item in elem.value:
                    self.dataset(item)
            keyword = elem.keyword
            action = BASIC_PROFILE.get(keyword)
            if action is None:
                continue
            if action == "X":
                del ds[elem.tag]
            elif keyword in _DATE_KEYWORDS:
                elem.value = self._date(elem.value, patient_id)
            elif action in ("Z", "D"):
                elem.value = ""
            elif action == "U":
                elem.value = self.remap_uid(str(elem.value))
        if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = self.remap_uid(str(ds.file_meta.MediaStorageSOPInstanceUID))
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "medvl PS3.15 Basic Application Level Confidentiality Profile"
        return ds

    def header(self, header: dict[str, Any]) -> dict[str, Any]:
        """De-identify a plain ``keyword -> value`` mapping (a header medvl already read)."""
        patient_id = str(header.get("PatientID", ""))
        out: dict[str, Any] = {}
        for keyword, value in header.items():
            action = BASIC_PROFILE.get(keyword)
            if action == "X":
                continue
            if keyword in _DATE_KEYWORDS:
                out[keyword] = self._date(value, patient_id)
            elif action in ("Z", "D"):
                out[keyword] = ""
            elif action == "U":
                out[keyword] = self.remap_uid(str(value))
            else:
                out[keyword] = value
        out["PatientIdentityRemoved"] = "YES"
        return out


def safe_metadata(ds: Any, deid: Deidentifier | None = None) -> dict[str, Any]:
    """The technical, de-identified subset of a pydicom dataset as a JSON-able dict.

    Only :data:`SAFE_KEYWORDS` are read, and they pass through the profile, so identifiers never reach the result.
    """
    deid = deid or Deidentifier()
    header: dict[str, Any] = {}
    for keyword in (*SAFE_KEYWORDS, "PatientID"):
        if keyword in ds:
            header[keyword] = _plain(ds[keyword].value)
    out = deid.header(header)
    out.pop("PatientID", None)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    if type(value).__name__ in ("DSfloat", "DSdecimal"):
        return float(value)
    if type(value).__name__ == "IS":
        return int(value)
    return str(value)
