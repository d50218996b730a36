"""Environment check: what medvl needs, what is there, and what is missing.

Each check is a :class:`Check` with a status of ``ok``, ``warn``, ``fail`` or ``skip``; a run with any ``fail`` exits
non-zero so a long batch job can refuse to start on a broken machine.

The default run imports nothing it checks: packages are found with ``importlib.util.find_spec`` and their versions read
from the installed metadata, DICOM decoder plugins are looked up the same way, and the OpenSlide library is located on
disk. It takes well under a second. ``deep=True`` (``medvl doctor --deep``) imports every package (a broken native
library shows up only then), loads OpenSlide, asks pydicom which decoders work and torch which devices exist.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
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
OPTIONAL = {"streamlit": ("app", "streamlit"), "ray": ("dist", "ray"), "playwright": ("app", "playwright")}
#: DICOM transfer syntaxes -> pydicom decoder plugins that handle them, each with the modules it needs
DICOM_PLUGINS = {
    "JPEG 2000": {"pylibjpeg": ("pylibjpeg", "openjpeg"), "pillow": ("PIL",), "gdcm": ("gdcm",)},
    "JPEG-LS": {"pylibjpeg": ("pylibjpeg", "libjpeg"), "pyjpegls": ("jpeg_ls",), "gdcm": ("gdcm",)},
}
DICOM_HINTS = {"JPEG 2000": "pylibjpeg-openjpeg", "JPEG-LS": "pylibjpeg-libjpeg"}

MIN_FREE_GB_WARN = 10.0
MIN_FREE_GB_FAIL = 1.0


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str


def run_checks(workspace: Path, deep: bool = False) -> list[Check]:
    """Every check, fast ones by default; ``deep`` imports the packages and loads the native libraries."""
    versions = installed_versions()
    checks = [Check("python", *_python())]
    if deep:
        checks += [_import_check(mod, dist, versions) for mod, dist in REQUIRED.items()]
    else:
        checks += [_installed_check(mod, dist, versions) for mod, dist in REQUIRED.items()]
    checks += [_optional_check(mod, extra, dist, versions) for mod, (extra, dist) in OPTIONAL.items()]
    steps: list[Callable[[], Check | list[Check]]] = (
        [_torch_devices, _openslide, _dicom_decoders] if deep else [_devices_skipped, _openslide_file, _dicom_plugins]
    )
    for step in steps:
        found = step()
        checks += found if isinstance(found, list) else [found]
    return checks + _workspace_checks(workspace)


def installed_versions() -> dict[str, str]:
    """Distribution name (lower case, ``-`` for ``_``) -> version, from one scan of the installed metadata."""
    from importlib.metadata import distributions

    out: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in out:  # the first on sys.path wins, as for imports
            out[name] = dist.version
    return out


def _python() -> tuple[str, str]:
    ok = sys.version_info >= (3, 11)
    return ("ok" if ok else "fail"), f"{platform.python_version()} ({sys.executable})"


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken parent package
        return False


def _installed_check(module: str, dist: str, versions: dict[str, str]) -> Check:
    if not _find(module):
        return Check(module, "fail", f"not installed (pip install {dist})")
    return Check(module, "ok", versions.get(dist.lower(), "?"))


def _import_check(module: str, dist: str, versions: dict[str, str]) -> Check:
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken native library
        return Check(module, "fail", f"missing or broken: {type(exc).__name__}: {exc} (pip install {dist})")
    return Check(module, "ok", versions.get(dist.lower(), "?"))


def _optional_check(module: str, extra: str, dist: str, versions: dict[str, str]) -> Check:
    if not _find(module):
        return Check(module, "warn", f'not installed (optional: pip install "medvl[{extra}]")')
    return Check(module, "ok", versions.get(dist, "?"))


def _devices_skipped() -> Check:
    return Check("devices", "skip", "not checked (medvl doctor --deep imports torch and lists CUDA/MPS devices)")


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


def _openslide_file() -> Check:
    """The OpenSlide shared library on disk: from openslide-bin, else the system's (not loaded)."""
    spec = importlib.util.find_spec("openslide_bin") if _find("openslide_bin") else None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        libs = sorted(p.name for p in folder.glob("libopenslide*"))
        if libs:
            return Check("openslide library", "ok", f"{libs[0]} from openslide-bin (loaded by --deep)")
    import ctypes.util

    found = ctypes.util.find_library("openslide")
    if found:
        return Check("openslide library", "ok", f"system {found} (loaded by --deep)")
    return Check("openslide library", "fail", "no OpenSlide library found (pip install openslide-bin)")


def _openslide() -> Check:
    try:
        import openslide
    except Exception as exc:
        return Check("openslide library", "fail", f"cannot load OpenSlide: {exc} (pip install openslide-bin)")
    return Check("openslide library", "ok", f"OpenSlide {openslide.__library_version__}")


def _dicom_plugins() -> list[Check]:
    """Decoder plugins whose packages are installed (``--deep`` asks pydicom which of them really decode)."""
    out = []
    for label, plugins in DICOM_PLUGINS.items():
        present = sorted(name for name, modules in plugins.items() if all(_find(m) for m in modules))
        if present:
            out.append(Check(f"dicom {label} decoder", "ok", ", ".join(present)))
        else:
            hint = DICOM_HINTS[label]
            out.append(Check(f"dicom {label} decoder", "fail", f"no decoder plugin (pip install pylibjpeg {hint})"))
    return out


def _dicom_decoders() -> list[Check]:
    try:
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.uid import JPEG2000Lossless, JPEGLSLossless
    except Exception as exc:
        return [Check("dicom decoders", "fail", f"pydicom unavailable: {exc}")]
    out = []
    for label, uid in (("JPEG 2000", JPEG2000Lossless), ("JPEG-LS", JPEGLSLossless)):
        plugins = sorted(get_decoder(uid).available_plugins)
        if plugins:
            out.append(Check(f"dicom {label} decoder", "ok", ", ".join(plugins)))
        else:
            hint = DICOM_HINTS[label]
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


def summarise(checks: list[Check], deep: bool = False) -> dict:
    failed = [c.name for c in checks if c.status == "fail"]
    return {"ok": not failed, "deep": deep, "failed": failed, "checks": [asdict(c) for c in checks]}
