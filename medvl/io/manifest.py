"""Cohort manifests: a CSV or Parquet table with one row per item (``case_id``, ``modality``, ``path``, ...).

:func:`read_manifest` validates every row before any work starts and reports every bad row in one error: missing
required columns, empty cells, unknown modalities, paths that do not exist, duplicate rows. Relative paths are
resolved against the manifest's folder. Optional columns (``report``, ``labels``, ``time``, ``event``, ``split``,
``slide_mpp``, ...) are carried through untouched for the steps that use them; ``time`` (non-negative number) and
``event`` (0/1) are checked where filled. :func:`validate_manifest` returns the full problem list (cohort pipelines
write it to a report file); ``unique_ids`` makes a repeated ``case_id`` a bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import InputError

__all__ = ["MODALITIES", "REQUIRED_COLUMNS", "Manifest", "ManifestRow", "is_manifest", "read_manifest",
           "validate_manifest"]

REQUIRED_COLUMNS = ("case_id", "modality", "path")
#: accepted spellings -> canonical modality
MODALITIES = {
    "image": "image",
    "slide": "slide", "wsi": "slide", "pathology": "slide",
    "ct": "ct", "radiology": "ct",
    "text": "text", "report": "text",
}
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
#: at most this many problems are spelled out in the error (the count covers all)
MAX_REPORTED = 20


@dataclass(frozen=True)
class ManifestRow:
    """One validated row: its 1-based data row number, the canonical modality, the resolved path, other columns."""

    row: int
    case_id: str
    modality: str
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)


@dataclass
class Manifest:
    """A validated manifest: its source file, rows, and the table as read (a pandas DataFrame)."""

    source: Path
    rows: list[ManifestRow]
    table: Any

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def select(self, modality: str) -> list[ManifestRow]:
        canonical = MODALITIES.get(modality, modality)
        return [r for r in self.rows if r.modality == canonical]


def is_manifest(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


def _read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise InputError(path, "manifest not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"case_id": str, "path": str})
    except Exception as exc:
        raise InputError(path, f"cannot read manifest ({' '.join(str(exc).split())[:200]})") from None


def _blank(value: Any) -> bool:
    import pandas as pd

    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value).strip() == ""


def _check_row(i: int, rec: dict[str, Any], base: Path, check_paths: bool, modalities: set[str] | None,
               problems: list[str]) -> ManifestRow | None:
    n_before = len(problems)
    for col in REQUIRED_COLUMNS:
        if _blank(rec.get(col)):
            problems.append(f"row {i}: empty '{col}'")
    if len(problems) > n_before:
        return None
    modality = MODALITIES.get(str(rec["modality"]).strip().lower())
    if modality is None:
        problems.append(f"row {i}: unknown modality '{rec['modality']}' (known: {', '.join(sorted(MODALITIES))})")
        return None
    if modalities is not None and modality not in modalities:
        return None
    path = Path(str(rec["path"]).strip()).expanduser()
    path = path if path.is_absolute() else base / path
    if check_paths and modality != "text" and not path.exists():
        problems.append(f"row {i}: path '{rec['path']}' not found")
        return None
    extra = {k: (None if _blank(v) else v) for k, v in rec.items() if k not in REQUIRED_COLUMNS}
    return ManifestRow(row=i, case_id=str(rec["case_id"]).strip(), modality=modality, path=path, extra=extra)


def read_manifest(path: str | Path, modality: str | None = None, check_paths: bool = True,
                  unique_ids: bool = False, allowed: tuple[str, ...] | None = None) -> Manifest:
    """Read and validate a cohort manifest.

    Args:
        path: ``.csv``, ``.tsv`` or ``.parquet`` file.
        modality: keep only rows of this modality (after validating their columns).
        check_paths: require every referenced file or folder to exist.
        unique_ids: every ``case_id`` must appear once (cohort pipelines key their outputs by it).
        allowed: canonical modalities the caller can process; any other modality is a bad row.

    Raises:
        InputError: naming the manifest and listing every bad row.
    """
    manifest, problems = validate_manifest(path, modality, check_paths, unique_ids, allowed)
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED])
        more = f"; ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise InputError(path, f"{len(problems)} bad row(s): {shown}{more}")
    return manifest


def _check_outcome(i: int, row: ManifestRow, problems: list[str]) -> None:
    """``time`` must be a non-negative number and ``event`` 0/1 where the columns are filled."""
    time, event = row.get("time"), row.get("event")
    if time is not None:
        try:
            ok = float(time) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"row {i}: 'time' must be a non-negative number, got {time!r}")
    if event is not None and str(event).strip().lower() not in ("0", "1", "0.0", "1.0", "true", "false"):
        problems.append(f"row {i}: 'event' must be 0 or 1, got {event!r}")


def validate_manifest(path: str | Path, modality: str | None = None, check_paths: bool = True,
                      unique_ids: bool = False, allowed: tuple[str, ...] | None = None
                      ) -> tuple[Manifest, list[str]]:
    """Check every row and return the good rows with the full list of problems (one string per bad row issue).

    A missing file or unreadable table (nothing to check row by row) is raised as :class:`InputError` at once.
    """
    path = Path(path)
    df = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        has = ", ".join(map(str, df.columns))
        raise InputError(path, f"missing required column(s) {', '.join(missing)} (has: {has})")
    wanted = None if modality is None else {MODALITIES.get(modality, modality)}
    problems: list[str] = []
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, str], int] = {}
    seen_ids: dict[str, int] = {}
    for i, rec in enumerate(df.to_dict(orient="records"), start=1):
        row = _check_row(i, rec, path.parent, check_paths, wanted, problems)
        if row is None:
            continue
        if allowed is not None and row.modality not in allowed:
            problems.append(f"row {i}: modality '{rec['modality']}' is not handled here (use: {', '.join(allowed)})")
            continue
        key = (row.case_id, str(row.path))
        if key in seen:
            problems.append(f"row {i}: duplicate of row {seen[key]} (case_id '{row.case_id}', same path)")
            continue
        if unique_ids and row.case_id in seen_ids:
            problems.append(f"row {i}: duplicate case_id '{row.case_id}' (first in row {seen_ids[row.case_id]})")
            continue
        n_before = len(problems)
        _check_outcome(i, row, problems)
        if len(problems) > n_before:
            continue
        seen[key] = i
        seen_ids.setdefault(row.case_id, i)
        rows.append(row)
    return Manifest(source=path, rows=rows, table=df), problems
