"""Survival view for the apps: a survival table in the workspace, its Cox model, Kaplan-Meier curves by predicted
risk group with the log-rank p-value, one patient's predicted survival curve and the model's C-index.

A saved model (``survival_model.json`` under ``models/`` or ``runs/``, from ``medvl survival fit``) is used when the
table holds its columns; otherwise a Cox model is fitted on the table's covariates (and cross-validated for an honest
C-index). Patients are shown by pseudonym; the id column is never displayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.apps.catalog import pseudonym
from medvl.errors import InputError

TIME_NAMES = ("time", "survival_months", "os_months", "os_time", "survival_time", "duration", "followup")
#: event column names and whether they hold 1 for censored rows
EVENT_NAMES = (("event", False), ("status", False), ("death", False), ("dead", False), ("censorship", True),
               ("censored", True), ("censoring", True))
ID_NAMES = ("case_id", "patient_id", "patient", "subject_id", "id")
#: columns never used as covariates (identifiers, other outcomes, split markers)
OUTCOME_WORDS = ("survival", "censor", "time", "event", "status", "death", "dss", "pfi")
EXCLUDE_PARTS = ("id", "train", "split", "slide", "path", "report", "barcode")
MAX_LEVELS = 12


@dataclass
class SurvivalSpec:
    """Columns of a survival table."""

    table: Path
    time: str
    event: str
    event_is_censoring: bool
    covariates: list[str] = field(default_factory=list)
    id_column: str | None = None


def _read(path: Path):
    from medvl.tasks.survival.tables import read_table

    return read_table(path)


def guess_spec(path: str | Path) -> SurvivalSpec:
    """Find the time, event and id columns by their usual names and choose covariates (numbers and short codes).

    Raises:
        InputError: no time or no event column.
    """
    path = Path(path)
    df = _read(path)
    lower = {str(c).lower(): str(c) for c in df.columns}
    time = next((lower[n] for n in TIME_NAMES if n in lower), None)
    event = next(((lower[n], cens) for n, cens in EVENT_NAMES if n in lower), None)
    if time is None or event is None:
        raise InputError(path, "not a survival table: needs a time column (e.g. 'time', 'survival_months') and an "
                               "event column (e.g. 'event', 'censorship')")
    id_col = next((lower[n] for n in ID_NAMES if n in lower), None)
    covariates = []
    for col in df.columns:
        name = str(col)
        if name.startswith("Unnamed") or name in (time, event[0], id_col):
            continue
        if any(w in name.lower() for w in OUTCOME_WORDS) or set(name.lower().split("_")) & set(EXCLUDE_PARTS):
            continue
        s = df[col]
        if s.dtype.kind in "biuf" and s.nunique() > 1 or s.dtype == object and 1 < s.nunique() <= MAX_LEVELS:
            covariates.append(name)
    if not covariates:
        raise InputError(path, "no usable covariate columns besides time and event")
    return SurvivalSpec(path, time, event[0], event[1], covariates, id_col)


def find_tables(tables: list[Path]) -> list[tuple[Path, SurvivalSpec]]:
    """The workspace tables that are survival tables, with their guessed columns."""
    out = []
    for path in tables:
        try:
            out.append((path, guess_spec(path)))
        except (InputError, ValueError, OSError):
            continue
    return out


@dataclass
class SurvivalView:
    """A fitted (or loaded) model on a table, with everything the page draws."""

    spec: SurvivalSpec
    model: Any
    X: Any
    time: np.ndarray
    event: np.ndarray
    refs: list[str]
    risk: np.ndarray
    km: dict[str, Any]
    c_index: float
    c_index_kind: str
    origin: str

    def group_of(self, i: int) -> str:
        cut = self.km["cutpoints"]
        names = ["low risk", "high risk"] if len(cut) == 1 else [g["name"] for g in self.km["groups"]]
        return names[int(np.searchsorted(cut, self.risk[i], side="right"))]

    def patient_curve(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        times, surv = self.model.predict_survival_function(self.X.iloc[[i]])
        return times, surv[0]


def _saved_model(spec: SurvivalSpec, saved: list[Path]):
    from medvl.tasks.survival.model import SurvivalModel

    for folder in saved:
        record = json.loads((folder / "survival_model.json").read_text())
        table = record.get("table") or {}
        if table.get("embedding_dim"):
            continue  # needs an embeddings file the page cannot pair reliably
        cols = table.get("covariates") or []
        if cols and table.get("time") == spec.time and table.get("event") == spec.event and \
                set(cols) <= set(map(str, _read(spec.table).columns)):
            return SurvivalModel.load(folder), cols, folder
    return None, spec.covariates, None


def build_view(spec: SurvivalSpec, saved: list[Path] = (), cv: int = 5, seed: int = 0) -> SurvivalView:
    """Load a matching saved model or fit a Cox model; risk groups split at the training median risk."""
    from medvl.tasks.survival.km import kaplan_meier_by_risk
    from medvl.tasks.survival.model import SurvivalConfig, SurvivalModel, cross_validate_survival
    from medvl.tasks.survival.tables import read_survival_table

    model, covariates, folder = _saved_model(spec, list(saved))
    table = read_survival_table(spec.table, spec.time, spec.event, covariates,
                                event_is_censoring=spec.event_is_censoring, id_column=spec.id_column)
    if model is None:
        config = SurvivalConfig(method="cox", penalizer=0.1)
        model = SurvivalModel.from_config(config).fit(table.X, table.y)
        res = cross_validate_survival(config, table.X, table.y, cv=cv, seed=seed)
        c_index, kind, origin = float(res["mean"]["harrell_c"]), f"{cv}-fold cross-validated Harrell's C", \
            "Cox model fitted on this table"
    else:
        c_index, kind = float(model.score(table.X, table.y)), "Harrell's C of the saved model on this table"
        origin = f"saved model {pseudonym(folder, 'model')}"
    risk = model.predict(table.X)
    km = kaplan_meier_by_risk(table.time, table.event, risk, cutpoints=np.array([model.train_risk_median_]))
    ids = table.ids if table.ids is not None else [str(i) for i in range(len(table))]
    return SurvivalView(replace_cov(spec, covariates), model, table.X, table.time, table.event,
                        [pseudonym(i, "patient") for i in ids], risk, km, c_index, kind, origin)


def replace_cov(spec: SurvivalSpec, covariates: list[str]) -> SurvivalSpec:
    return SurvivalSpec(spec.table, spec.time, spec.event, spec.event_is_censoring, list(covariates), spec.id_column)


def plot_view(view: SurvivalView, patient: int | None, time_unit: str = ""):
    """Kaplan-Meier curves by risk group (with log-rank p) and the selected patient's predicted curve."""
    from matplotlib.figure import Figure

    from medvl.tasks.plots import plot_km

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    plot_km(view.km, ax, time_unit=time_unit)
    if patient is not None:
        t, s = view.patient_curve(patient)
        ax.step(t, s, where="post", color="black", linestyle="--", linewidth=2,
                label=f"{view.refs[patient]} (predicted, {view.group_of(patient)})")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
