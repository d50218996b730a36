"""Atomic file and folder writes: write to a temporary beside the target, then rename over it.

A crash (even SIGKILL) leaves either the old file or the new one, never a half-written file under the final name.
Temporary files carry the ``.tmp-medvl`` marker so a later run can sweep leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARKER = ".tmp-medvl"


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed onto ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_MARKER, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a final file gets what open() would give
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` (old content removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TMP_MARKER, dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a final folder gets what mkdir() would give
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old{TMP_MARKER}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    """The process umask: from /proc on Linux (no change to the process), else by setting it and putting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=indent, default=json_default) + "\n")


def sweep_temporaries(folder: str | Path, older_than: float | None = None) -> list[Path]:
    """Remove temporary files a killed run left in ``folder`` (non-recursive); return what was removed.

    Args:
        folder: the output folder.
        older_than: only remove temporaries idle for more than this many seconds (a folder that live writers share
            keeps their fresh temporaries); ``None`` removes all.
    """
    import time

    removed = []
    folder = Path(folder)
    now = time.time()
    if folder.is_dir():
        for p in folder.glob(f".*{TMP_MARKER}"):
            with contextlib.suppress(FileNotFoundError):
                if older_than is not None and now - p.stat().st_mtime <= older_than:
                    continue
                p.unlink()
                removed.append(p)
    return removed


def json_default(obj: Any) -> Any:
    """JSON encoding of what medvl records hold besides plain types: paths, numpy arrays/scalars, configs."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
