"""Environment check: what medvl needs, what is there, and what is missing.

Each check is a :class:`Check` with a status of ``ok``, ``warn`` or ``fail``; a run with any ``fail`` exits non-zero
so a long batch job can refuse to start on a broken machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: import name -> distribution name of every core dependency
REQUIRED = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "monai": "monai",
    "einops": "einops",
    "pydicom": "pydicom",
    "nibabel": "nibabel",
    "openslide": "openslide-python",
    "tiffslide": "tiffslide",
    "tifffile": "tifffile",
    "wsidicom": "wsidicom",
    "h5py": "h5py",
    "lifelines": "lifelines",
    "sksurv": "scikit-survival",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "faiss": "faiss-cpu",
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "typer": "typer",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib",
    "rapidfuzz": "rapidfuzz",
    "simple_icd_10_cm": "simple-icd-10-cm",
}
#: optional packages, reported as warnings when absent
OPTIONAL = {"streamlit": "app", "ray": "dist", "playwright": "app"}

MIN_FREE_GB_WARN = 10.0
MIN_FREE_GB_FAIL = 1.0


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


def run_checks(workspace: Path) -> list[Check]:
    checks = [Check("python", *_python())]
    checks += [_import_check(mod, dist) for mod, dist in REQUIRED.items()]
    checks += [_optional_check(mod, extra) for mod, extra in OPTIONAL.items()]
    checks += [_torch_devices(), _openslide(), *_dicom_decoders(), *_workspace_checks(workspace)]
    return checks


def _python() -> tuple[str, str]:
    ok = sys.version_info >= (3, 11)
    return ("ok" if ok else "fail"), f"{platform.python_version()} ({sys.executable})"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _import_check(module: str, dist: str) -> Check:
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken native library
        return Check(module, "fail", f"missing or broken: {type(exc).__name__}: {exc} (pip install {dist})")
    return Check(module, "ok", _version(dist))


def _optional_check(module: str, extra: str) -> Check:
    if importlib.util.find_spec(module) is None:
        return Check(module, "warn", f'not installed (optional: pip install "medvl[{extra}]")')
    return Check(module, "ok", _version(module))


def _torch_devices() -> Check:
    try:
        import torch
    except Exception:
        return Check("devices", "fail", "torch unavailable")
    parts = []
    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        parts.append(f"cuda x{torch.cuda.device_count()} ({', '.join(sorted(names))})")
    else:
        parts.append("cuda: not available")
    mps = getattr(torch.backends, "mps", None)
    parts.append(f"mps: {'available' if mps is not None and mps.is_available() else 'not available'}")
    parts.append(f"cpu threads: {torch.get_num_threads()}")
    return Check("devices", "ok", "; ".join(parts))


def _openslide() -> Check:
    try:
        import openslide
    except Exception as exc:
        return Check("openslide library", "fail", f"cannot load OpenSlide: {exc} (pip install openslide-bin)")
    return Check("openslide library", "ok", f"OpenSlide {openslide.__library_version__}")


def _dicom_decoders() -> list[Check]:
    try:
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.uid import JPEG2000Lossless, JPEGLSLossless
    except Exception as exc:
        return [Check("dicom decoders", "fail", f"pydicom unavailable: {exc}")]
    out = []
    for label, uid in (("JPEG 2000", JPEG2000Lossless), ("JPEG-LS", JPEGLSLossless)):
        decoder = get_decoder(uid)
        plugins = sorted(decoder.available_plugins)
        if plugins:
            out.append(Check(f"dicom {label} decoder", "ok", ", ".join(plugins)))
        else:
            hint = "pylibjpeg-openjpeg" if label == "JPEG 2000" else "pylibjpeg-libjpeg"
            out.append(Check(f"dicom {label} decoder", "fail", f"no decoder plugin (pip install pylibjpeg {hint})"))
    return out


def _workspace_checks(workspace: Path) -> list[Check]:
    probe = workspace
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    checks = [Check("workspace", "ok", str(workspace) + ("" if workspace.exists() else " (will be created)"))]
    if not os.access(probe, os.W_OK):
        checks[0] = Check("workspace", "fail", f"{workspace}: not writable")
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=probe):
                pass
        except OSError as exc:
            checks[0] = Check("workspace", "fail", f"{workspace}: not writable ({exc.strerror})")
    free_gb = shutil.disk_usage(probe).free / 1e9
    min_fail = float(os.environ.get("MEDVL_MIN_FREE_GB", MIN_FREE_GB_FAIL))
    status = "fail" if free_gb < min_fail else "warn" if free_gb < MIN_FREE_GB_WARN else "ok"
    checks.append(Check("free disk", status, f"{free_gb:.1f} GB free at {probe}"))
    return checks


def summarise(checks: list[Check]) -> dict:
    failed = [c.name for c in checks if c.status == "fail"]
    return {"ok": not failed, "failed": failed, "checks": [asdict(c) for c in checks]}
