"""Survival jobs on tables: fit, predict, evaluate (what ``medvl survival ...`` runs).

The saved model folder records which columns and which embeddings it was fitted on, so ``predict`` and ``evaluate``
check a new table against it (missing columns, embeddings of another width or encoder) before predicting.
Outputs never contain case identifiers unless asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError, InputError
from medvl.provenance import Provenance, parse_provenance, require_match
from medvl.tasks.survival.model import SurvivalConfig, SurvivalModel, cross_validate_survival
from medvl.tasks.survival.tables import SurvivalTable, read_survival_table


@dataclass
class TableSpec(Config):
    """Where the outcome and covariates live in a table.

    Attributes:
        table: CSV/TSV/Parquet file.
        time: follow-up time column (empty: the saved model's, for predict and evaluate).
        event: event column (1 = event), or censoring column with ``event_is_censoring`` (empty: the model's).
        covariates: clinical covariate columns (empty: the model's).
        event_is_censoring: the event column holds 1 for censored rows; ``None``: the saved model's coding (fit:
            False). A value that contradicts the saved model is an error, never a silent inversion of the events.
        time_unit: unit of the time column (``days``, ``months``...); ``None``: the saved model's. Stored with the
            model so that ``--times`` and the plots of a prediction are in the unit it was fitted in.
        embeddings: optional embeddings file joined by id (or row order).
        id_column: case id column (default ``case_id`` when present).
        trust_provenance: accept embeddings that carry no provenance record (recorded in the model and outputs).
    """

    table: Path
    time: str = ""
    event: str = ""
    covariates: list[str] = field(default_factory=list)
    event_is_censoring: bool | None = None
    time_unit: str | None = None
    embeddings: Path | None = None
    id_column: str | None = None
    trust_provenance: bool = False

    def read(self, require_events: bool = True) -> SurvivalTable:
        if not self.covariates and self.embeddings is None:
            raise ConfigError("name covariates (--covariates A,B) and/or an embeddings file (--embeddings FILE)")
        if not self.time or not self.event:
            raise ConfigError("name the time and event columns (--time COL --event COL)")
        table = read_survival_table(self.table, self.time, self.event, self.covariates,
                                    event_is_censoring=bool(self.event_is_censoring), id_column=self.id_column,
                                    embeddings=self.embeddings, require_events=require_events)
        if self.embeddings is not None and table.embedding_provenance is None:  # refused unless trusted
            require_match(None, Provenance(), self.embeddings, trust=self.trust_provenance,
                          redo="write them with medvl (ct embed, medvl run, save_embeddings with a provenance)")
        return table


def table_provenance(spec: TableSpec, table: SurvivalTable) -> dict[str, Any]:
    """The provenance of a survival record: the table's (and embeddings file's) fingerprint and the record of the
    embeddings' model."""
    from medvl.provenance import input_print

    out: dict[str, Any] = {"input": input_print(spec.table)}
    if spec.embeddings is not None:
        prov = table.embedding_provenance
        out["embeddings"] = {"input": input_print(spec.embeddings),
                             **(prov.summary() if prov is not None else {"trusted": ["no provenance record"]})}
    return out


#: outcome settings of a spec that a saved model fixes -> the flag that sets them
_OUTCOME_FLAGS = {"time": "--time", "event": "--event", "event_is_censoring": "--event-is-censoring",
                  "time_unit": "--time-unit"}


def spec_for_model(model: SurvivalModel, spec: TableSpec) -> TableSpec:
    """``spec`` completed with the outcome coding saved in the model; a contradicting setting is an error.

    A model fitted with ``--event-is-censoring`` and evaluated without it would otherwise invert every event (and
    report a concordance below one half as if it were the model's).
    """
    saved = model.record_.get("table", {})
    changes: dict[str, Any] = {}
    for key, flag in _OUTCOME_FLAGS.items():
        given, stored = getattr(spec, key), saved.get(key)
        if given in (None, ""):
            changes[key] = stored if stored is not None else getattr(spec, key)
        elif key == "event_is_censoring" and stored is not None and bool(given) != bool(stored):
            coding = "1 = censored" if stored else "1 = event"
            raise ConfigError(f"the model was fitted with the event column coded {coding}; {flag} contradicts it "
                              "(leave it out: the saved coding is used)")
        elif key == "time_unit" and stored and given != stored:
            raise ConfigError(f"the model was fitted on times in {stored}; {flag} {given} contradicts it")
    if not spec.covariates and saved.get("covariates"):
        changes["covariates"] = list(saved["covariates"])
    return spec.replace(**changes) if changes else spec


def fit_table(spec: TableSpec, config: SurvivalConfig, out: Path | None = None, cv: int | None = None,
              seed: int = 0) -> dict[str, Any]:
    """Fit on every row (saved to ``out``) and optionally cross-validate; returns a JSON-able record."""
    table = spec.read()
    model = SurvivalModel.from_config(config).fit(table.X, table.y)
    record: dict[str, Any] = {
        "method": config.method, "n": len(table), "events": int(table.event.sum()), "dropped_rows": table.n_dropped,
        "train_harrell_c": model.train_c_, "coefficients": model.coefficients(),
        "inputs": model.design_.feature_names_, "provenance": table_provenance(spec, table),
    }
    if model.summary_ is not None:
        record["p_values"] = {k: float(v) for k, v in model.summary_["p"].items()}
    if cv:
        res = cross_validate_survival(config, table.X, table.y, cv=cv, seed=seed)
        record["cv"] = {"folds": cv, "seed": seed, "mean": res["mean"], "std": res["std"]}
    if out is not None:
        model.save(out, extra={"table": _spec_record(spec, table)})
        record["model"] = str(out)
    return record


def _spec_record(spec: TableSpec, table: SurvivalTable) -> dict[str, Any]:
    emb_cols = [c for c in table.X.columns if str(c).startswith("emb_")]
    prov = table.embedding_provenance
    return {"time": spec.time, "event": spec.event, "event_is_censoring": bool(spec.event_is_censoring),
            "time_unit": spec.time_unit, "covariates": list(spec.covariates), "embedding_dim": len(emb_cols) or None,
            "embedding_encoder": table.encoder,
            "embedding_provenance": prov.space().to_dict() if prov is not None else None}


def _read_for_model(model: SurvivalModel, spec: TableSpec, require_events: bool) -> SurvivalTable:
    spec = spec_for_model(model, spec)
    saved = model.record_.get("table", {})
    missing = [c for c in saved.get("covariates", []) if c not in spec.covariates]
    if missing:
        raise ConfigError(f"the model was fitted with covariates {saved['covariates']}; missing: {missing}")
    table = spec.read(require_events=require_events)
    dim = saved.get("embedding_dim")
    got = len([c for c in table.X.columns if str(c).startswith("emb_")])
    if dim and got == 0:
        raise InputError(spec.table, f"the model was fitted on {dim}-d embeddings; pass --embeddings")
    if dim and got != dim:
        raise InputError(spec.embeddings, f"embeddings are {got}-d but the model was fitted on {dim}-d embeddings")
    saved_prov = parse_provenance(saved.get("embedding_provenance"))
    if dim and saved_prov is not None:  # the embeddings must live in the space the model was fitted in
        require_match(table.embedding_provenance, saved_prov, spec.embeddings, parts=("model", "preprocessing",
                      "tiling"), trust=spec.trust_provenance, redo="use embeddings made as those of the fit")
        return table
    enc, saved_enc = table.encoder, saved.get("embedding_encoder")
    if enc and saved_enc and enc != saved_enc:
        raise InputError(spec.embeddings, f"embeddings come from encoder '{enc}' but the model used '{saved_enc}'")
    return table


def predict_table(model_dir: Path, spec: TableSpec, out: Path | None = None, times: list[float] | None = None,
                  keep_ids: bool = False) -> dict[str, Any]:
    """Risk score, risk group (training median split) and survival at ``times`` per row; optional CSV/Parquet."""
    from medvl.atomic import atomic_path

    model = SurvivalModel.load(model_dir)
    table = _read_for_model(model, spec, require_events=False)
    risk = model.predict(table.X)
    frame = pd.DataFrame({"row": np.arange(len(risk)), "risk": risk})
    frame["risk_group"] = np.where(risk > model.train_risk_median_, "high", "low")
    if times:
        _, surv = model.predict_survival_function(table.X, np.asarray(times, float))
        for j, t in enumerate(times):
            frame[f"survival_at_{t:g}"] = surv[:, j]
    if keep_ids and table.ids is not None:
        frame.insert(1, "id", table.ids)
    record: dict[str, Any] = {"n": len(frame), "risk_mean": float(risk.mean()), "risk_std": float(risk.std()),
                              "time_unit": model.record_.get("table", {}).get("time_unit"),
                              "provenance": {"model": str(model_dir), **table_provenance(spec, table)}}
    if out is not None:
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False) if Path(out).suffix == ".parquet" else frame.to_csv(tmp, index=False)
        record["predictions"] = str(out)
    else:
        record["predictions"] = frame.to_dict(orient="records")  # ids only with keep_ids, as in the file
    return record


def evaluate_table(spec: TableSpec, model_dir: Path | None = None, config: SurvivalConfig | None = None,
                   cv: int | None = None, seed: int = 0, report: Path | None = None) -> dict[str, Any]:
    """Metrics of a saved model on a table, or cross-validated metrics of ``config``; optional KM plot."""
    from medvl.tasks.survival.km import kaplan_meier_by_risk
    from medvl.tasks.survival.metrics import survival_metrics

    if model_dir is not None:
        model = SurvivalModel.load(model_dir)
        table = _read_for_model(model, spec, require_events=True)
        risk = model.predict(table.X)

        def surv_fn(times):
            return model.predict_survival_function(table.X, times)[1]

        # censoring weights from the evaluated table itself (the training outcome is not stored)
        metrics = survival_metrics(table.y, table.y, risk, surv_fn)
        saved = model.record_.get("table", {})
        record: dict[str, Any] = {"mode": "model", "metrics": metrics,
                                  "event_is_censoring": bool(saved.get("event_is_censoring")),
                                  "time_unit": saved.get("time_unit"),
                                  "provenance": {"model": str(model_dir), **table_provenance(spec, table)}}
    else:
        if not cv:
            raise ConfigError("evaluate needs --model DIR or --cv K")
        table = spec.read()
        res = cross_validate_survival(config or SurvivalConfig(), table.X, table.y, cv=cv, seed=seed)
        risk = res["oof_risk"]
        record = {"mode": "cross-validation", "folds": cv, "seed": seed, "metrics": res["mean"], "std": res["std"]}
    km = kaplan_meier_by_risk(table.time, table.event, risk)
    record["logrank_p"] = km["logrank_p"]
    record["risk_groups"] = [{k: g[k] for k in ("name", "n", "events", "median_survival")} for g in km["groups"]]
    if report is not None:
        from medvl.atomic import atomic_write_json
        from medvl.tasks.plots import new_axes, plot_km, save_figure

        fig, ax = new_axes()
        plot_km(km, ax, time_unit=record.get("time_unit") or spec.time_unit or "")
        save_figure(fig, Path(report) / "kaplan_meier.png")
        atomic_write_json(Path(report) / "survival_metrics.json", record)
        record["report"] = str(report)
    return record
