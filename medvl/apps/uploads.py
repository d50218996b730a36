"""Uploaded files: a size limit, an allowed-suffix check, and a content-addressed copy on local disk.

Readers (OpenSlide, nibabel, ...) need a path, so an upload is written once to a temporary folder named by the hash
of its content; the original file name is not kept (it may carry a patient identifier), only its suffix.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from medvl.atomic import atomic_write_bytes
from medvl.errors import InputError

LIMIT_ENV = "MEDVL_APP_MAX_UPLOAD_MB"
DEFAULT_LIMIT_MB = 200.0
UPLOAD_DIR_ENV = "MEDVL_APP_UPLOAD_DIR"


def upload_limit_mb() -> float:
    """The app's upload limit in MB (``MEDVL_APP_MAX_UPLOAD_MB``, default 200)."""
    try:
        value = float(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT_MB))
    except ValueError:
        return DEFAULT_LIMIT_MB
    return value if value > 0 else DEFAULT_LIMIT_MB


def upload_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where uploads are kept (``MEDVL_APP_UPLOAD_DIR`` or a ``medvl-uploads`` folder in the temp dir)."""
    env = os.environ if env is None else env
    return Path(env.get(UPLOAD_DIR_ENV) or Path(tempfile.gettempdir()) / "medvl-uploads")


def full_suffix(name: str) -> str:
    """Lower-case suffix, keeping double ones such as ``.nii.gz``."""
    lower = name.lower()
    for double in (".nii.gz", ".ome.tiff", ".ome.tif"):
        if lower.endswith(double):
            return double
    return Path(lower).suffix


def save_upload(name: str, data: bytes, allowed: Sequence[str], limit_mb: float | None = None,
                folder: Path | None = None) -> Path:
    """Check and store an upload; returns the stored path (``<sha256[:16]><suffix>``).

    Args:
        name: the uploaded file's name (only its suffix is used).
        data: the file's bytes.
        allowed: accepted suffixes, e.g. ``(".svs", ".tif")``.
        limit_mb: size limit (default: :func:`upload_limit_mb`).
        folder: where to store it (default: :func:`upload_dir`).

    Raises:
        InputError: empty, too large, or of a suffix not in ``allowed``.
    """
    limit = upload_limit_mb() if limit_mb is None else limit_mb
    suffix = full_suffix(name)
    if suffix not in {s.lower() for s in allowed}:
        raise InputError(None, f"uploaded file type '{suffix or 'none'}' is not accepted here "
                               f"(accepted: {', '.join(allowed)})")
    if not data:
        raise InputError(None, "the uploaded file is empty")
    size_mb = len(data) / 1e6
    if size_mb > limit:
        raise InputError(None, f"the uploaded file is {size_mb:.1f} MB; the limit is {limit:g} MB")
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = (folder or upload_dir()) / f"{digest}{suffix}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return target
