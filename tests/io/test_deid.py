"""De-identification (PS3.15 Basic Profile) of what medvl keeps from DICOM headers."""
# ruff: noqa: F811 - pytest fixtures imported from tests.radiology.dicom_series

from __future__ import annotations

import datetime as dt
import json

import pydicom
from pydicom.data import get_testdata_file

from medvl.io.deid import DeidConfig, Deidentifier, safe_metadata
from medvl.io.volume import load_volume
from tests.radiology.dicom_series import PHI, ct_small, dicom_series  # noqa: F401


def test_dataset_profile_removes_identifiers_and_remaps_uids():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    for key, value in PHI.items():
        setattr(ds, key, value)
    out = Deidentifier().dataset(ds)
    assert out.PatientName == "" and out.PatientID == "" and out.PatientBirthDate == "" and out.AccessionNumber == ""
    assert "InstitutionName" not in out and "OperatorsName" not in out
    assert out.StudyDate == ""  # dates removed by default
    assert out.StudyInstanceUID != study and out.StudyInstanceUID.startswith("2.25.")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID  # both re-mapped the same way
    assert out.PatientIdentityRemoved == "YES"
    text = str(out)
    assert not any(v in text for v in PHI.values())
    again = Deidentifier().remap_uid(series)
    assert again == out.SeriesInstanceUID  # consistent across runs with one key
    assert Deidentifier(DeidConfig(key="site-secret")).remap_uid(series) != again


def test_date_shift_keeps_intervals():
    deid = Deidentifier(DeidConfig(date_mode="shift", key="k"))
    a = deid.header({"PatientID": "P1", "StudyDate": "20200110"})["StudyDate"]
    b = deid.header({"PatientID": "P1", "StudyDate": "20200120"})["StudyDate"]
    day = lambda s: dt.datetime.strptime(s, "%Y%m%d")  # noqa: E731
    assert a != "20200110" and (day(b) - day(a)).days == 10
    assert "PatientID" in deid.header({"PatientID": "P1"}) and deid.header({"PatientID": "P1"})["PatientID"] == ""


def test_volume_metadata_carries_no_identifiers(dicom_series):
    vol = load_volume(dicom_series)
    blob = json.dumps(vol.meta, default=str)
    assert not any(v in blob for v in PHI.values())
    assert vol.meta["Modality"] == "CT" and vol.meta["PatientIdentityRemoved"] == "YES"
    ds = pydicom.dcmread(next(dicom_series.iterdir()))
    assert vol.meta["SeriesInstanceUID"] != ds.SeriesInstanceUID
    assert set(safe_metadata(ds)) <= set(vol.meta)


def test_malformed_identifiers_are_not_echoed_in_warnings_or_logs(tmp_path, ct_small, caplog, recwarn):
    """pydicom quotes a malformed value when it warns; a malformed patient ID or UID must not reach a log."""
    import logging

    from tests.radiology.dicom_series import write_ct_series

    bad = {"PatientID": "MRN-" + "7" * 70, "PatientName": "Qwobble^" + "x" * 70}  # both longer than the VR allows
    folder = write_ct_series(tmp_path / "s", ct_small, slices=range(3), phi=bad, study_uid="1.2.3.4x5")
    caplog.clear(), recwarn.clear()  # writing the series warned too
    caplog.set_level(logging.DEBUG)
    vol = load_volume(folder)
    heard = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert vol.array.shape[2] == 3
    assert not any(v in heard for v in [*bad.values(), "1.2.3.4x5"])
    assert not any(v in json.dumps(vol.meta, default=str) for v in bad.values())


def test_concurrent_reads_keep_pydicom_quiet_and_restore_it(dicom_series):
    """App sessions read in threads: pydicom stays quiet while any read runs and is restored after the last."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from pydicom import config

    mode = config.settings.reading_validation_mode
    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(lambda _: load_volume(dicom_series).array.shape, range(8)))
    assert len(set(shapes)) == 1
    assert config.settings.reading_validation_mode == mode and not logging.getLogger("pydicom").disabled
