"""``medvl doctor`` names a missing DICOM decoder before a long run starts.

The environment is made to lack the pylibjpeg plugins the way a partial install does: a ``sitecustomize`` on
PYTHONPATH blocks the import of ``pylibjpeg`` (the same shadowing technique ``tests/cli/test_cli.py`` uses for FAISS;
unwritable workspace and low disk are checked there too).
"""

from __future__ import annotations

import os

from tests.conftest import run_cli


def test_doctor_fails_naming_the_missing_jpeg_ls_decoder(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text("import sys\nsys.modules['pylibjpeg'] = None  # not installed\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("doctor", "--json", "--workspace", tmp_path / "ws", env=env)
    assert result.returncode == 1, result.stderr
    report = result.json()
    assert report["failed"] == ["dicom JPEG-LS decoder"]
    check = next(c for c in report["checks"] if c["name"] == "dicom JPEG-LS decoder")
    assert "pylibjpeg-libjpeg" in check["detail"]
    j2k = next(c for c in report["checks"] if c["name"] == "dicom JPEG 2000 decoder")
    assert j2k["status"] == "ok" and "pylibjpeg" not in j2k["detail"]  # Pillow still decodes JPEG 2000
