"""CT batch inputs: one path (DICOM folder, DICOM file, NIfTI) or a cohort manifest (CSV/TSV/Parquet).

A manifest has a ``path`` column (relative paths are read from the manifest's folder) and optionally ``case_id``,
``modality`` (rows whose modality is not CT are skipped), ``label_map`` (a label map per case, e.g. a
TotalSegmentator NIfTI; relative to the manifest's folder) and ``series``. These are the column names of the cohort
manifest (:mod:`medvl.io.manifest`), where ``labels`` holds diagnostic labels, not label maps.
"""

from __future__ import annotations

from pathlib import Path

from medvl.errors import InputError
from medvl.log import get_logger
from medvl.radiology.preprocess import CTCase

log = get_logger(__name__)

__all__ = ["LABEL_MAP_COLUMN", "MANIFEST_SUFFIXES", "case_id_for", "read_ct_cases"]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")
#: the manifest column with each case's label map (the cohort manifest's name for it)
LABEL_MAP_COLUMN = "label_map"


def case_id_for(path: Path) -> str:
    """A case id from a path: the file name without ``.nii(.gz)``/``.dcm``, or the folder name."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_table(path: Path):
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"cannot read manifest: {exc}") from None


def _optional(row, column: str) -> str | None:
    value = row.get(column)
    if value is None or str(value).strip() in ("", "nan", "None"):
        return None
    return str(value).strip()


def _hint_renamed_column(path: Path, table) -> None:
    """Label-map paths under ``labels`` (the diagnostic-label column) are not read: say where they belong."""
    if LABEL_MAP_COLUMN in table.columns or "labels" not in table.columns:
        return
    if any(str(v).strip().lower().endswith((".nii", ".nii.gz")) for v in table["labels"]):
        log.warning("%s: the 'labels' column holds diagnostic labels; label maps are read from '%s' (rename the "
                    "column to use them)", path.name, LABEL_MAP_COLUMN)


def read_ct_cases(path: str | Path, labels: str | Path | None = None, series: str | None = None) -> list[CTCase]:
    """The cases named by ``path``: itself, or the CT rows of a manifest.

    Args:
        path: a DICOM folder or file, a NIfTI file, or a manifest.
        labels: the label map to use where a manifest row names none in its ``label_map`` column (or for ``path``).
        series: the series to read where a row names none.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    if not (path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES):
        return [CTCase(path=path, case_id=case_id_for(path), labels=Path(labels) if labels else None, series=series)]
    table = _read_table(path)
    _hint_renamed_column(path, table)
    if "path" not in table.columns:
        raise InputError(path, f"manifest has no 'path' column (columns: {', '.join(map(str, table.columns))})")
    cases = []
    for _, row in table.iterrows():
        modality = _optional(row, "modality")
        if modality is not None and modality.upper() != "CT":
            continue
        item = Path(str(row["path"]))
        item = item if item.is_absolute() else path.parent / item
        label_path = _optional(row, LABEL_MAP_COLUMN)
        cases.append(
            CTCase(
                path=item,
                case_id=_optional(row, "case_id") or case_id_for(item),
                labels=(Path(label_path) if Path(label_path).is_absolute() else path.parent / label_path)
                if label_path
                else (Path(labels) if labels else None),
                series=_optional(row, "series") or series,
            )
        )
    if not cases:
        raise InputError(path, "manifest lists no CT case")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(path, f"case_id {dup!r} appears more than once")
    return cases
