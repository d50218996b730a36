"""``medvl doctor`` names a missing DICOM decoder before a long run starts, by default without importing anything.

The environment is made to lack the pylibjpeg plugins the way a partial install does: a ``sitecustomize`` on
PYTHONPATH blocks the import of ``pylibjpeg`` (the same shadowing technique ``tests/cli/test_cli.py`` uses for FAISS;
unwritable workspace and low disk are checked there too).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import run_cli

HEAVY = ("torch", "torchvision", "timm", "monai", "pydicom", "openslide", "transformers", "pandas", "sklearn", "faiss",
         "h5py", "lifelines", "matplotlib", "PIL", "numpy")


def _without_pylibjpeg(tmp_path) -> dict[str, str]:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # pylibjpeg and the other JPEG-LS decoders (pyjpegls comes with highdicom, gdcm) are blocked: none installed
    (shadow / "sitecustomize.py").write_text("import sys\nfor name in ('pylibjpeg', 'jpeg_ls', 'gdcm'):\n"
                                             "    sys.modules[name] = None  # not installed\n")
    return {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}


def test_doctor_fails_naming_the_missing_jpeg_ls_decoder(tmp_path):
    env = _without_pylibjpeg(tmp_path)
    for deep in ([], ["--deep"]):
        result = run_cli("doctor", *deep, "--json", "--workspace", tmp_path / "ws", env=env)
        assert result.returncode == 1, result.stderr
        report = result.json()
        assert report["failed"] == ["dicom JPEG-LS decoder"], deep
        check = next(c for c in report["checks"] if c["name"] == "dicom JPEG-LS decoder")
        assert "pylibjpeg-libjpeg" in check["detail"]
        j2k = next(c for c in report["checks"] if c["name"] == "dicom JPEG 2000 decoder")
        assert j2k["status"] == "ok" and "pylibjpeg" not in j2k["detail"]  # Pillow still decodes JPEG 2000


def test_default_doctor_imports_nothing_it_checks(tmp_path):
    code = ("import sys\nfrom pathlib import Path\nfrom medvl.doctor import run_checks, summarise\n"
            f"report = summarise(run_checks(Path({str(tmp_path / 'ws')!r})))\n"
            f"print(report['ok'], sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "[]"]


def test_a_missing_package_fails_by_default(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text("import sys\nsys.modules['h5py'] = None  # not installed\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("doctor", "--json", "--workspace", tmp_path / "ws", env=env)
    assert result.returncode == 1 and result.json()["failed"] == ["h5py"]
    check = next(c for c in result.json()["checks"] if c["name"] == "h5py")
    assert check["detail"] == "not installed (pip install h5py)"
