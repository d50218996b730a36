"""Checking a cohort manifest's rows before training: every problem named by its manifest row and column.

:func:`check_rows` reads the manifest (``medvl.io.manifest``), keeps the rows of one modality and checks each: the
split is known, the text is not empty, the file decodes (or the volume preprocesses), the labels are known. Bad rows
are either one :class:`~medvl.errors.InputError` listing them (``row 4, column 'path': ...``) or, with
``skip_bad``, left out and returned as :class:`RowProblem` records for the run folder's skipped list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import InputError

__all__ = ["CheckedRows", "RowProblem", "check_labels", "check_rows", "split_labels"]

#: problems spelled out in one error (the count covers all)
MAX_SHOWN = 20


@dataclass(frozen=True)
class RowProblem:
    """One bad cell: the 1-based data row of the manifest, the column, and what is wrong."""

    row: int | None
    column: str | None
    problem: str

    def __str__(self) -> str:
        where = ", ".join(p for p in (f"row {self.row}" if self.row else "",
                                      f"column '{self.column}'" if self.column else "") if p)
        return f"{where}: {self.problem}" if where else self.problem

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "problem": self.problem}


@dataclass
class CheckedRows:
    """The good rows of one modality (``ManifestRow`` with their split, text and labels) and every problem."""

    source: Path
    rows: list[Any]
    splits: list[str]
    texts: list[str]
    labels: list[list[str]]
    problems: list[RowProblem] = field(default_factory=list)
    total_rows: int = 0
    other_modalities: int = 0


def split_labels(value: Any) -> list[str]:
    """``"DOID:1612; benign"`` -> ``["DOID:1612", "benign"]`` (empty cells give none)."""
    if value is None:
        return []
    return [p.strip() for p in str(value).split(";") if p.strip()]


def _fail(source: Path, problems: list[RowProblem]) -> InputError:
    shown = "; ".join(str(p) for p in problems[:MAX_SHOWN])
    more = f"; ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
    hint = " (--skip-bad trains on the other rows)"
    return InputError(source, f"{len(problems)} bad row(s): {shown}{more}{hint}")


def _read(path: Path, text_column: str) -> tuple[Any, list[RowProblem]]:
    from medvl.io.manifest import validate_manifest

    manifest, problems = validate_manifest(path, check_paths=False)
    if text_column not in manifest.table.columns:
        has = ", ".join(map(str, manifest.table.columns))
        raise InputError(path, f"column '{text_column}': missing (the text of every row; has: {has})")
    # the manifest reader's own problems already start with their row ("row 3: empty 'path'")
    return manifest, [RowProblem(None, None, p) for p in problems]


def _check_row(row: Any, reader: Any, splits: list[str], default_split: str, text_column: str
               ) -> tuple[str, str, list[RowProblem]]:
    problems: list[RowProblem] = []
    split = str(row.get("split") or default_split).strip()
    if split not in splits:
        problems.append(RowProblem(row.row, "split", f"unknown split '{split}' (known: {', '.join(splits)})"))
    text = str(row.get(text_column) or "").strip()
    if not text:
        problems.append(RowProblem(row.row, text_column, "empty text"))
    if not row.path.exists():
        problems.append(RowProblem(row.row, "path", f"'{row.path.name}' not found"))
    else:
        try:
            reader.check(row)
        except Exception as exc:  # any decoder or preprocessing failure is this row's problem
            message = " ".join(str(exc).split())[:200] or type(exc).__name__
            column = getattr(exc, "column", None)  # a reader's problem with another cell (a slide's tile store)
            problems.append(RowProblem(row.row, column or "path", message if column
                                       else f"cannot read '{row.path.name}': {message}"))
    return split, text, problems


def check_rows(path: Path, modality: str, reader: Any, *, splits: list[str], default_split: str,
               text_column: str, skip_bad: bool) -> CheckedRows:
    """Every row of ``modality`` checked; raises one error naming each bad row and column unless ``skip_bad``."""
    manifest, problems = _read(path, text_column)
    chosen = manifest.select(modality)
    out = CheckedRows(path, [], [], [], [], problems, len(manifest.table), len(manifest.rows) - len(chosen))
    for row in chosen:
        split, text, bad = _check_row(row, reader, splits, default_split, text_column)
        if bad:
            out.problems.extend(bad)
            continue
        out.rows.append(row)
        out.splits.append(split)
        out.texts.append(text)
        out.labels.append(split_labels(row.get("labels")))
    if out.problems and not skip_bad:
        raise _fail(path, out.problems)
    if not out.rows:
        why = f"{len(out.problems)} bad row(s), first: {out.problems[0]}" if out.problems else "none in the manifest"
        raise InputError(path, f"no usable '{modality}' row ({why}); no run started")
    return out


def check_labels(checked: CheckedRows, classes: list[str], skip_bad: bool) -> None:
    """Every label of every row must be one of ``classes``; bad rows are dropped (``skip_bad``) or raised."""
    known = set(classes)
    keep = []
    for i, (row, labels) in enumerate(zip(checked.rows, checked.labels, strict=True)):
        unknown = [lab for lab in labels if lab not in known]
        if unknown:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            checked.problems.append(RowProblem(row.row, "labels", f"unknown label '{unknown[0]}' (known: {shown})"))
        else:
            keep.append(i)
    if len(keep) < len(checked.rows):
        if not skip_bad:
            raise _fail(checked.source, checked.problems)
        for name in ("rows", "splits", "texts", "labels"):
            values = getattr(checked, name)
            setattr(checked, name, [values[i] for i in keep])
