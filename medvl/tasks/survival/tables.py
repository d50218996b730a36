"""Survival tables: read a CSV/Parquet table, check the time/event/covariate columns, join embeddings.

One clear :class:`~medvl.errors.InputError` per problem a user can fix: a missing column, negative or missing times,
an event column that is not 0/1, all rows censored, embeddings that do not line up with the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvl.errors import InputError
from medvl.log import get_logger

log = get_logger(__name__)

#: prefix of the columns that carry embedding dimensions in a design frame
EMBEDDING_PREFIX = "emb_"

_READERS = {
    ".csv": pd.read_csv,
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
}


@dataclass
class SurvivalTable:
    """Covariates (and embedding columns ``emb_*``) with the outcome of each row.

    Attributes:
        X: one row per case; clinical covariates plus ``emb_0..emb_{d-1}`` when embeddings were joined.
        time: follow-up time per row (same unit as the table).
        event: True where the event was observed, False where the row is censored.
        ids: case identifiers when the table has an id column (kept internal; never exported).
        n_dropped: rows dropped because a covariate was missing.
        encoder: encoder name recorded in the embeddings file, if any.
        embedding_provenance: the embeddings file's provenance record (:mod:`medvl.provenance`), if any.
    """

    X: pd.DataFrame
    time: np.ndarray
    event: np.ndarray
    ids: np.ndarray | None = None
    n_dropped: int = 0
    encoder: str | None = None
    embedding_provenance: Any = None

    @property
    def y(self) -> np.ndarray:
        """The outcome as a scikit-survival structured array (``event``, ``time``)."""
        return make_surv(self.time, self.event)

    def __len__(self) -> int:
        return len(self.time)


def make_surv(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Structured array with fields ``event`` (bool) and ``time`` (float), as scikit-survival expects."""
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"] = np.asarray(event, dtype=bool)
    y["time"] = np.asarray(time, dtype=float)
    return y


def split_surv(y) -> tuple[np.ndarray, np.ndarray]:
    """Accept a structured array, a ``(time, event)`` pair or a 2-column array; return ``(time, event)``."""
    if isinstance(y, np.ndarray) and y.dtype.names:
        names = y.dtype.names
        ev = next(n for n in names if y[n].dtype == bool or n.lower() in ("event", "status", "cens"))
        tm = next(n for n in names if n != ev)
        return np.array(y[tm], dtype=float), np.array(y[ev], dtype=bool)
    if isinstance(y, tuple) and len(y) == 2:
        return np.array(y[0], dtype=float), np.array(y[1]).astype(bool)
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr[:, 0].astype(float), arr[:, 1].astype(bool)
    raise ValueError("y must be a structured (event, time) array, a (time, event) tuple or an [n, 2] array")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet table with a clear error on a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "table not found")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(path, f"unsupported table format '{path.suffix}' (use {', '.join(_READERS)})")
    try:
        return reader(path)
    except Exception as exc:  # pandas/pyarrow raise many kinds
        raise InputError(path, f"cannot read table ({type(exc).__name__}: {exc})") from None


def read_survival_table(
    path: str | Path,
    time: str,
    event: str,
    covariates: list[str] | None = None,
    *,
    event_is_censoring: bool = False,
    id_column: str | None = None,
    embeddings: str | Path | None = None,
    dedupe: bool = True,
    require_events: bool = True,
) -> SurvivalTable:
    """Read and validate a survival table.

    Args:
        path: CSV, TSV or Parquet file.
        time: name of the follow-up time column (non-negative, no missing values).
        event: name of the 0/1 event column (1 = event) or censoring column with ``event_is_censoring``.
        covariates: clinical columns to use; text columns are one-hot encoded later by the model.
        event_is_censoring: the event column holds 1 for censored rows (as in TCGA/SurvPath tables).
        id_column: column with case ids, used to drop duplicate rows per case and to join embeddings by id.
        embeddings: optional embeddings file (see :func:`medvl.io.embeddings.load_embeddings`) with one row per
            table row, or with ids matching ``id_column``.
        dedupe: keep the first row per id (tables with one row per slide).
        require_events: raise when every row is censored (fitting needs events; prediction does not).
    """
    path = Path(path)
    df = read_table(path)
    covariates = list(covariates or [])
    if id_column is None and "case_id" in df.columns:
        id_column = "case_id"
    needed = [time, event, *covariates] + ([id_column] if id_column else [])
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise InputError(path, f"missing column(s) {names} (columns: {', '.join(map(str, df.columns))})")
    if dedupe and id_column:
        df = df.drop_duplicates(subset=[id_column], keep="first")
    df = df.reset_index(drop=True)
    t = check_time(path, df[time], time)
    e = check_event(path, df[event], event, event_is_censoring)
    X = df[covariates].copy()
    ids = df[id_column].astype(str).to_numpy() if id_column else None
    encoder = provenance = None
    if embeddings is not None:
        X, emb = _join_embeddings(path, X, ids, embeddings)
        encoder, provenance = emb.encoder, emb.provenance
    keep = ~X.isna().any(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if n_dropped:
        log.warning("%s: dropped %d row(s) with a missing covariate", path.name, n_dropped)
    table = SurvivalTable(X[keep].reset_index(drop=True), t[keep], e[keep], None if ids is None else ids[keep],
                          n_dropped, encoder, provenance)
    if len(table) == 0:
        raise InputError(path, "no rows left after dropping rows with missing covariates")
    if require_events and not table.event.any():
        raise InputError(path, f"all {len(table)} rows are censored (column '{event}'): a survival model needs events")
    return table


def check_time(path: Path, col: pd.Series, name: str) -> np.ndarray:
    """Follow-up times as floats; non-numeric, missing or negative values are an error naming the column."""
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad_nan = np.isnan(values) & col.notna().to_numpy()
    if bad_nan.any():
        raise InputError(path, f"column '{name}' has {int(bad_nan.sum())} non-numeric value(s)")
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))[:5].tolist()
        raise InputError(path, f"column '{name}' has {int(np.isnan(values).sum())} missing time(s) (rows {rows})")
    if (values < 0).any():
        rows = np.flatnonzero(values < 0)[:5].tolist()
        raise InputError(path, f"column '{name}' has {int((values < 0).sum())} negative time(s) (rows {rows})")
    return values


def check_event(path: Path, col: pd.Series, name: str, is_censoring: bool) -> np.ndarray:
    """Events as booleans (True = event) from a 0/1 (or bool) column; anything else is an error naming it."""
    if col.dtype == bool:
        values = col.to_numpy()
    else:
        num = pd.to_numeric(col, errors="coerce")
        if num.isna().any() or not set(np.unique(num.to_numpy())) <= {0, 1}:
            raise InputError(path, f"column '{name}' must hold 0/1 values (found {sorted(map(str, col.unique()))[:5]})")
        values = num.to_numpy() == 1
    return ~values if is_censoring else values.astype(bool)


def _join_embeddings(path: Path, X: pd.DataFrame, ids: np.ndarray | None, source: str | Path):
    from medvl.io.embeddings import load_embeddings

    emb = load_embeddings(source)
    matrix = emb.embeddings
    if emb.ids is not None and ids is not None:
        index = {k: i for i, k in enumerate(emb.ids)}
        rows = np.array([index.get(k, -1) for k in ids])
        if (rows < 0).all():
            raise InputError(source, f"no embedding ids match the ids of {path.name}")
        joined = np.full((len(ids), matrix.shape[1]), np.nan, dtype=np.float64)
        joined[rows >= 0] = matrix[rows[rows >= 0]]
        if (rows < 0).any():
            log.warning("%s: %d case(s) have no embedding and are dropped", Path(source).name, int((rows < 0).sum()))
        matrix = joined
    elif len(matrix) != len(X):
        raise InputError(source, f"has {len(matrix)} rows but the table has {len(X)} (and no ids to join on)")
    cols = pd.DataFrame(matrix, columns=[f"{EMBEDDING_PREFIX}{i}" for i in range(matrix.shape[1])])
    return pd.concat([X.reset_index(drop=True), cols], axis=1), emb
