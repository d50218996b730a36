"""Resume state: which (case, step) pairs are finished, keyed by input content and step configuration.

Each finished step leaves ``state/<case_id>/<step>.json`` holding its key and its output record; it is written
atomically *after* the step's outputs, so a run killed at any moment leaves either a finished step (marker present,
outputs complete) or an unfinished one (no marker: redone on the next run). A step is skipped when its marker's key
equals the key computed now and every output file it lists still exists.

The key hashes the input file's content (BLAKE2b of its bytes, memoised per file by size and mtime so a rerun over
10,000 slides does not reread them), the step's configuration, the model's fingerprint and the keys of the steps it
depends on: change any of them and that step and everything downstream is redone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json
from medvl.hashing import config_hash, content_hash

__all__ = ["CaseState", "input_fingerprint"]


def input_fingerprint(path: Path, memo_file: Path, write: bool = True) -> str:
    """Content hash of a case's input (file or folder), memoised in ``memo_file`` by path, size and mtime.

    ``write=False`` reads the memo but never writes it (``medvl run --dry-run`` leaves the workspace as it is).
    """
    stat_key = _stat_key(path)
    try:
        memo = json.loads(memo_file.read_text())
        if memo.get("stat") == stat_key:
            return str(memo["hash"])
    except (OSError, ValueError, KeyError):
        pass
    digest = content_hash(path)
    if write:
        atomic_write_json(memo_file, {"stat": stat_key, "hash": digest})
    return digest


def _stat_key(path: Path) -> list[Any]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [str(path.resolve())] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


@dataclass
class CaseState:
    """The markers of one case."""

    folder: Path

    def key(self, step: str, input_hash: str, step_config: Any, upstream: list[str]) -> str:
        return config_hash({"step": step, "input": input_hash, "config": step_config, "upstream": upstream})

    def marker(self, step: str) -> Path:
        return self.folder / f"{step}.json"

    def finished(self, step: str, key: str) -> dict[str, Any] | None:
        """The stored output record when ``step`` finished with this ``key`` and its outputs are still there."""
        try:
            data = json.loads(self.marker(step).read_text())
        except (OSError, ValueError):
            return None
        if data.get("key") != key:
            return None
        outputs = data.get("outputs", [])
        if not all(Path(p).exists() for p in outputs):
            return None
        return data.get("record", {})

    def finish(self, step: str, key: str, record: dict[str, Any], outputs: list[str], seconds: float) -> None:
        atomic_write_json(self.marker(step), {"key": key, "record": record, "outputs": outputs,
                                              "seconds": round(seconds, 3)})
