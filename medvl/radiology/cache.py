"""Persistent cache of preprocessed volumes, keyed by input file content and the preprocessing config.

Layout: ``<root>/<config fingerprint[:16]>/config.json`` (the resolved config, next to its outputs) and
``<root>/<config fingerprint[:16]>/<key>.npz`` per volume, where the key hashes the bytes of the input (every file of a
DICOM folder), the label map, the series selector and the config. Entries are written atomically (temporary file +
rename), so a crash never leaves a partial entry, and a failed case writes nothing. Temporaries a killed writer left
behind are removed when the cache is next opened, once idle for :data:`STALE_TMP_SECONDS` (other processes may be
writing into the same cache right now).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_path, atomic_write_json, sweep_temporaries
from medvl.hashing import bytes_hash, content_hash
from medvl.log import get_logger
from medvl.radiology.transforms import CTPreprocessConfig

log = get_logger(__name__)

__all__ = ["CacheEntry", "VolumeCache"]

#: a temporary untouched this long belongs to a killed writer (a live one writes its entry in one go)
STALE_TMP_SECONDS = 60.0


@dataclass
class CacheEntry:
    """A preprocessed volume: ``array`` float32 ``[1, D, H, W]``, its (x, y, z) affine and de-identified metadata."""

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any]
    path: Path
    hit: bool


class VolumeCache:
    """Preprocessed volumes under ``root`` for one :class:`CTPreprocessConfig`."""

    def __init__(self, root: str | Path, config: CTPreprocessConfig):
        self.config = config
        self.dir = Path(root) / config.fingerprint()[:16]
        # a killed writer's temporary stays forever otherwise; live writers sharing the folder keep fresh ones
        sweep_temporaries(self.dir, older_than=STALE_TMP_SECONDS)

    def key(self, path: str | Path, labels: str | Path | None = None, series: str | None = None) -> str:
        parts = [content_hash(path), content_hash(labels) if labels else "", series or "", self.config.fingerprint()]
        return bytes_hash("|".join(parts).encode())

    def entry_path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def get(self, key: str) -> CacheEntry | None:
        path = self.entry_path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return CacheEntry(z["image"], z["affine"], json.loads(str(z["meta"])), path, hit=True)
        except (OSError, ValueError, KeyError) as exc:  # a damaged entry is recomputed, not trusted
            log.warning("cache entry %s unreadable (%s); recomputing", path.name, type(exc).__name__)
            return None

    def put(self, key: str, array: np.ndarray, affine: np.ndarray, meta: dict[str, Any]) -> CacheEntry:
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "config.json"
        if not config_file.exists():
            atomic_write_json(config_file, self.config.to_dict())
        path = self.entry_path(key)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, image=array.astype(np.float32, copy=False), affine=affine,
                     meta=np.array(json.dumps(meta, default=_plain)))
        return CacheEntry(array, affine, meta, path, hit=False)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
