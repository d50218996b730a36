"""``medvl survival fit|predict|evaluate``: Cox and deep-Cox models on a CSV/Parquet table.

Model settings come from :class:`~medvl.tasks.survival.model.SurvivalConfig` (``--config FILE``), overridden by the
flags given; a flag left out keeps the file's value or the dataclass default. ``predict`` and ``evaluate`` with
``--model`` take the outcome coding (event or censoring column, time unit) saved with the model.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import ConfigFileOpt, Result, WorkspaceOpt, command

app = typer.Typer()

TableOpt = Annotated[Path, typer.Option("--table", help="CSV, TSV or Parquet table, one row per case.")]
TimeOpt = Annotated[Optional[str], typer.Option("--time", help="Follow-up time column (default with --model: the "  # noqa: UP045
                                                                "model's).")]
EventOpt = Annotated[Optional[str], typer.Option("--event", help="Event column, 1 = event, 0 = censored (default "  # noqa: UP045
                                                                  "with --model: the model's).")]
CensOpt = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option("--event-is-censoring/--event-is-event", help="The event column holds 1 for censored rows (or 1 for "
                 "events). Default: 1 = event when fitting; the coding saved in the model with --model.",
                 show_default=False),
]
UnitOpt = Annotated[Optional[str], typer.Option("--time-unit", help="Unit of the time column (days, months...), "  # noqa: UP045
                                                                     "saved with the model.")]
CovOpt = Annotated[str, typer.Option("--covariates", help="Comma-separated covariate columns (default with --model: "
                                                          "the model's).")]
EmbOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--embeddings", help="Embeddings file (.npz/.npy/.parquet) joined by case id or row order."),
]
IdOpt = Annotated[Optional[str], typer.Option("--id", help="Case id column (default: case_id if present).")]  # noqa: UP045
MethodOpt = Annotated[Optional[str], typer.Option("--method", help="cox (lifelines) or deepcox (MLP head).")]  # noqa: UP045
PenOpt = Annotated[Optional[float], typer.Option("--penalizer", help="Ridge penalty of the Cox fit.")]  # noqa: UP045
PcaOpt = Annotated[Optional[int], typer.Option("--pca", help="Principal components kept from the embeddings.")]  # noqa: UP045
TiesOpt = Annotated[Optional[str], typer.Option("--ties", help="Tie handling of the deep head: efron or breslow.")]  # noqa: UP045
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training steps of the deep head.")]  # noqa: UP045
CvOpt = Annotated[Optional[int], typer.Option("--cv", help="K-fold cross-validation.")]  # noqa: UP045
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed of the folds and the deep head.")]  # noqa: UP045


def _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column):
    from medvl.tasks.survival.run import TableSpec

    covs = [c.strip() for c in covariates.split(",") if c.strip()]
    return TableSpec(table=table, time=time or "", event=event or "", covariates=covs,
                     event_is_censoring=event_is_censoring, time_unit=time_unit, embeddings=embeddings,
                     id_column=id_column)


def _config(path, method, penalizer, pca, ties, epochs, seed):
    from medvl.cli.flags import config_from
    from medvl.tasks.survival.model import SurvivalConfig

    return config_from(SurvivalConfig, path, method=method, penalizer=penalizer, pca_components=pca, ties=ties,
                       epochs=epochs, seed=seed)


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


@command(app, "fit")
def fit(
    table: TableOpt,
    time: TimeOpt = None,
    event: EventOpt = None,
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = None,
    time_unit: UnitOpt = None,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    config: ConfigFileOpt = None,
    method: MethodOpt = None,
    penalizer: PenOpt = None,
    pca: PcaOpt = None,
    ties: TiesOpt = None,
    epochs: EpochsOpt = None,
    cv: CvOpt = None,
    seed: SeedOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Model folder (default: <workspace>/models/survival).")] = None,  # noqa: UP045, E501
    workspace: WorkspaceOpt = None,
) -> Result:
    """Fit a survival model on the whole table (and cross-validate with --cv); saves the model folder."""
    from medvl.tasks.survival.run import fit_table
    from medvl.workspace import Workspace

    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column)
    cfg = _config(config, method, penalizer, pca, ties, epochs, seed)
    out = out or Workspace.resolve(workspace).models / "survival"
    rec = fit_table(spec, cfg, out=out, cv=cv, seed=cfg.seed)
    lines = [f"{cfg.method}: {rec['n']} cases, {rec['events']} events; training Harrell C "
             f"{rec['train_harrell_c']:.3f}"]
    for name, coef in (rec["coefficients"] or {}).items():
        lines.append(f"  {name:<28} {coef:+.4f}")
    if "cv" in rec:
        lines.append(f"{cv}-fold CV: {_fmt_metrics(rec['cv']['mean'])}")
    lines.append(f"model saved to {out}")
    return Result(rec, "\n".join(lines))


@command(app, "predict")
def predict(
    model: Annotated[Path, typer.Option("--model", help="Model folder written by 'medvl survival fit'.")],
    table: TableOpt,
    time: TimeOpt = None,
    event: EventOpt = None,
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = None,
    time_unit: UnitOpt = None,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    times: Annotated[str, typer.Option("--times", help="Comma-separated times (in the model's time unit) for "
                                                       "survival probabilities.")] = "",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write predictions (CSV or Parquet).")] = None,  # noqa: UP045
    keep_ids: Annotated[bool, typer.Option("--keep-ids", help="Include the case id column (in --out and in --json "
                                                              "output).")] = False,
) -> Result:
    """Risk scores, risk groups and survival probabilities for the rows of a table."""
    from medvl.tasks.survival.run import predict_table

    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column)
    grid = [float(t) for t in times.split(",") if t.strip()]
    rec = predict_table(model, spec, out=out, times=grid, keep_ids=keep_ids)
    text = f"{rec['n']} predictions" + (f" written to {out}" if out else "")
    return Result(rec, text if out else None)


@command(app, "evaluate")
def evaluate(
    table: TableOpt,
    time: TimeOpt = None,
    event: EventOpt = None,
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = None,
    time_unit: UnitOpt = None,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Evaluate this saved model.")] = None,  # noqa: UP045
    config: ConfigFileOpt = None,
    method: MethodOpt = None,
    penalizer: PenOpt = None,
    pca: PcaOpt = None,
    ties: TiesOpt = None,
    epochs: EpochsOpt = None,
    cv: CvOpt = None,
    seed: SeedOpt = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for metrics JSON and the KM plot.")] = None,  # noqa: UP045, E501
) -> Result:
    """Harrell C, Uno C, time-dependent AUC, integrated Brier score and KM log-rank p of a model or a CV run."""
    from medvl.tasks.survival.run import evaluate_table

    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column)
    cfg = _config(config, method, penalizer, pca, ties, epochs, seed)
    rec = evaluate_table(spec, model_dir=model, config=cfg, cv=cv, seed=cfg.seed, report=report)
    text = f"{rec['mode']}: {_fmt_metrics(rec['metrics'])}; log-rank p {rec['logrank_p']:.3g}"
    return Result(rec, text)
