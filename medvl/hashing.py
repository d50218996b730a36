"""Content hashes: of files and folders (their bytes), and of JSON-able values (configs).

These are the fingerprints resume and cache decisions rest on: a reused output must match the hash of what made it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["bytes_hash", "config_hash", "content_hash", "sha256_file"]

_CHUNK = 1 << 20


def content_hash(path: str | Path) -> str:
    """BLAKE2b of a file's bytes, or of every file (relative name + bytes) under a folder."""
    path = Path(path)
    h = hashlib.blake2b(digest_size=20)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes as hex: the checksum published model files and bundles are listed with."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_hash(data: bytes, digest_size: int = 16) -> str:
    """BLAKE2b of ``data`` as hex (``digest_size`` bytes)."""
    return hashlib.blake2b(data, digest_size=digest_size).hexdigest()


def config_hash(obj: Any) -> str:
    """A stable short hash of a JSON-able value (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
