"""Content fingerprints of ontology sources: what a cached graph and its index are keyed by.

A source file's fingerprint is the SHA-256 of its bytes. Hashing every source (13 MB with ICD-10-CM) on every look-up
would cost a fresh ``medvl ontology search`` 40 ms, so digests are remembered per file together with the file's size,
modification time, change time, inode and device: a file that is written to changes at least its change time (which no
user command can set back), so a remembered digest is used only for the very bytes it was computed from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medvl.log import get_logger

log = get_logger(__name__)

#: file holding remembered digests, inside the first writable graph cache folder
MEMO_NAME = "digests.json"

_memory: dict[str, tuple[list[int], str]] = {}


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DigestMemo:
    """Digests of files, recomputed whenever a file's stat record differs from the one they were computed with.

    Args:
        memo_file: where digests persist between processes (``None``: this process only).
    """

    def __init__(self, memo_file: Path | None):
        self.memo_file = memo_file
        self._disk: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._disk is None:
            self._disk = {}
            if self.memo_file is not None and self.memo_file.is_file():
                try:
                    data = json.loads(self.memo_file.read_text(encoding="utf-8"))
                    self._disk = data if isinstance(data, dict) else {}
                except (OSError, ValueError):  # a damaged memo only costs a rehash
                    self._disk = {}
        return self._disk

    def digest(self, path: str | Path) -> str:
        """SHA-256 of the file's bytes (remembered while the file is unchanged)."""
        path = Path(path).resolve()
        key = str(path)
        stat = _stat_key(path)
        held = _memory.get(key)
        if held is not None and held[0] == stat:
            return held[1]
        disk = self._load().get(key)
        if isinstance(disk, list) and len(disk) == 2 and disk[0] == stat:
            value = str(disk[1])
        else:
            value = sha256_file(path)
            self._load()[key] = [stat, value]
            self._dirty = True
        _memory[key] = (stat, value)
        return value

    def save(self) -> None:
        """Write new digests to the memo file (atomically; a folder that is not writable is skipped)."""
        if not self._dirty or self.memo_file is None:
            return
        from medvl.atomic import atomic_write_text

        try:
            atomic_write_text(self.memo_file, json.dumps(self._load()))
            self._dirty = False
        except OSError as exc:
            log.debug("cannot remember file digests in %s (%s)", self.memo_file, exc)


def package_files(module: str) -> tuple[Path | None, list[Path]]:
    """Folder and files of an installed package (code and data), found without importing it; ``(None, [])`` when it
    is not installed. Used for ICD-10-CM, which comes from the ``simple-icd-10-cm`` package."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None, []
    root = Path(spec.origin).parent
    return root, sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def combine(parts: list[Any]) -> str:
    """A short stable fingerprint of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
