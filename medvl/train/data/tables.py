"""Rows of a training table: the columns a dataset needs, checked once, and the ``split`` / ``exclude_split`` filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvl.errors import InputError

__all__ = ["select_rows"]


def select_rows(df: Any, table: Path, columns: list[str], split_column: str, split: str | None,
                exclude_split: str | None) -> Any:
    """``df`` restricted to the rows of ``split`` (and not of ``exclude_split``); a missing column of ``columns`` (or
    the split column when a split is asked for) is one error naming ``table``."""
    needed = list(columns) + ([split_column] if split is not None or exclude_split is not None else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(table, f"missing column(s) {', '.join(missing)}")
    if split is not None:
        df = df[df[split_column].astype(str) == split]
    if exclude_split is not None:
        df = df[df[split_column].astype(str) != exclude_split]
    return df
