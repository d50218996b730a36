"""PHI: identifiers in a DICOM header never reach any medvl output, export, log or app page.

A CT series carries a patient name, ID, birth date, accession number, institution, referring physician and study date
(plus its original study/series UIDs). It goes through ``ct info``, ``ct preprocess`` and ``ct embed`` (three export
formats) with debug logging, a DICOM SEG with its de-identified source series, an index build and search over the
exported embeddings, and the CT viewer app on a workspace holding the series. Every stdout, stderr, log record,
rendered app element and written file is searched.
(``tests/radiology/test_cli.py::test_phi_never_leaves_medvl`` checks info/preprocess through the installed command.)
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from medvl.cli.main import app
from medvl.resources import bundled
from tests.radiology.dicom_series import PHI, write_ct_series


@pytest.fixture(scope="module")
def phi_case(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("phi")
    ws = root / "ws"
    series = write_ct_series(ws / "ct" / "study1", bundled("ct_small"), slices=range(12), phi=PHI)
    first = pydicom.dcmread(next(series.iterdir()))
    needles = [*PHI.values(), *PHI["PatientName"].split("^"), *PHI["ReferringPhysicianName"].split("^"),
               "1941-03-17", "2019-06-11", first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID]
    return ws, series, needles


def _file_text(path: Path) -> str:
    """Everything readable in a file: its bytes, plus decoded content of compressed or columnar formats."""
    data = path.read_bytes()
    parts = [data.decode("latin-1")]
    if data[:2] == b"\x1f\x8b":
        parts.append(gzip.decompress(data).decode("latin-1"))
    if path.suffix == ".parquet":
        parts.append(pd.read_parquet(path).to_csv())
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            parts += [str(z[k].tolist()) for k in z.files if z[k].dtype.kind in "USO"]
    elif path.suffix == ".h5":
        with h5py.File(path) as f:
            f.visititems(lambda name, obj: parts.append(f"{name} {dict(obj.attrs)} "
                                                        f"{obj[()] if obj.dtype.kind in 'SOU' else ''}")
                         if isinstance(obj, h5py.Dataset) else parts.append(f"{name} {dict(obj.attrs)}"))
            parts.append(str(dict(f.attrs)))
    return "\n".join(parts)


def _leaks(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n in text]


def test_cli_outputs_exports_and_logs_carry_no_identifiers(phi_case, tmp_path):
    ws, series, needles = phi_case
    assert set(PHI.values()) <= set(_leaks(_file_text(next(series.iterdir())), needles))  # the search finds them
    exports = tmp_path / "exports"
    runs = [
        ["ct", "info", str(series), "-vv"],
        ["ct", "info", str(series), "--json"],
        ["ct", "preprocess", str(series), "--workspace", str(ws), "--size", "48,48,16", "-vv"],
        ["ct", "preprocess", str(series), "--workspace", str(ws), "--size", "48,48,16", "--json"],
    ]
    runs += [["ct", "embed", str(series), "--tower", "resnet3d-tiny", "--random-weights", "--out",
              str(exports / f"emb.{fmt}"), "--size", "48,48,16", "--workspace", str(ws), "--device", "cpu", "-vv",
              "--json"]
             for fmt in ("npz", "h5", "parquet")]
    # the DICOM SEG of the model's input region and its de-identified copy of the source series
    runs.append(["ct", "preprocess", str(series), "--workspace", str(ws), "--size", "48,48,16", "--dicom-seg",
                 str(exports / "dicom"), "-vv", "--json"])
    runs += [["index", "build", str(exports / "emb.npz"), "--out", str(exports / "index"), "-vv", "--json"],
             ["index", "search", "--index", str(exports / "index"), "--query", str(exports / "emb.npz"), "--json"]]
    runner = CliRunner()
    for args in runs:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.stderr)
        assert _leaks(result.stdout + result.stderr, needles) == [], args
    assert "DEBUG" in runner.invoke(app, runs[2]).stderr  # the debug log really was on
    written = [p for root in (ws, exports) for p in root.rglob("*") if p.is_file() and "ct" not in p.parts[-3:-1]]
    written = [p for p in written if series not in p.parents]
    assert any(p.suffix == ".npz" for p in written) and any(p.name == "metadata.parquet" for p in written)
    assert any(p.name.endswith("_seg.dcm") for p in written) and any(p.parent.name.endswith("_source")
                                                                     for p in written)
    leaks = {str(p): _leaks(_file_text(p), needles) for p in written}
    assert {k: v for k, v in leaks.items() if v} == {}


def _rendered(node) -> list[str]:
    """Every string of an AppTest element tree (protobuf text of each element, recursively)."""
    out = [str(node.proto)] if getattr(node, "proto", None) is not None else []
    for child in getattr(node, "children", {}).values():
        out += _rendered(child)
    return out


def test_ct_viewer_app_shows_no_identifiers(phi_case, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from medvl.resources import app_dir

    ws, series, needles = phi_case
    monkeypatch.setenv("MEDVL_WORKSPACE", str(ws))
    monkeypatch.setenv("MEDVL_APP_ROOTS", str(ws.parent))
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    medvl_log = logging.getLogger("medvl")
    medvl_log.addHandler(handler)
    old_level = medvl_log.level
    medvl_log.setLevel(logging.DEBUG)
    try:
        page = next((app_dir() / "pages").glob("*_CT_viewer.py"))
        at = AppTest.from_file(str(page), default_timeout=180).run()
    finally:
        medvl_log.removeHandler(handler)
        medvl_log.setLevel(old_level)
    assert not at.exception, [e.value for e in at.exception]
    shown = "\n".join(_rendered(at._tree))
    assert "spacing" in shown and "study1" not in shown  # the page rendered the series, under a pseudonym
    assert _leaks(shown, needles) == []
    assert _leaks("\n".join(records), needles) == []
