"""Content hashes: of files and folders (their bytes), and of JSON-able values (configs).

These are the fingerprints resume and cache decisions rest on: a reused output must match the hash of what made it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["bytes_hash", "config_hash", "content_hash", "memo_content_hash", "sha256_file"]

_CHUNK = 1 << 20
#: content hashes of this process, keyed by (resolved path, size, mtime in ns)
_MEMO: dict[str, str] = {}


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


def memo_content_hash(path: str | Path, memo_file: str | Path | None = None) -> str:
    """:func:`content_hash` of a file, recomputed only when its path, size or modification time changed.

    The stat is checked first (memoised in this process and, with ``memo_file``, in a small JSON file kept beside a
    cache), so a large slide is hashed once, not on every look-up. The documented limit: a file rewritten with the
    very same size and modification time (to the nanosecond) keeps its old hash.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    if key in _MEMO:
        return _MEMO[key]
    memo: dict[str, str] = {}
    if memo_file is not None:
        try:
            memo = json.loads(Path(memo_file).read_text())
        except (OSError, ValueError):
            memo = {}
    digest = memo.get(key) if isinstance(memo, dict) else None
    if not isinstance(digest, str):
        digest = content_hash(path)
        if memo_file is not None:
            _store_memo(Path(memo_file), {k: v for k, v in memo.items() if not k.startswith(f"{path}|")}, key,
                        digest)
    _MEMO[key] = digest
    return digest


def _store_memo(memo_file: Path, memo: dict[str, str], key: str, digest: str) -> None:
    from medvl.atomic import atomic_write_json

    try:
        atomic_write_json(memo_file, {**memo, key: digest})
    except OSError:
        pass  # a read-only cache folder: the hash is still right, only not kept


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
