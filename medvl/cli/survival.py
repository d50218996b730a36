"""``medvl survival fit|predict|evaluate``: Cox and deep-Cox models on a CSV/Parquet table; bag-Cox models on tile
features (``fit --bags``)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, WorkspaceOpt, command

app = typer.Typer()

TableOpt = Annotated[Path, typer.Option("--table", help="CSV, TSV or Parquet table, one row per case.")]
TimeOpt = Annotated[str, typer.Option("--time", help="Follow-up time column.")]
EventOpt = Annotated[str, typer.Option("--event", help="Event column (1 = event, 0 = censored).")]
CensOpt = Annotated[bool, typer.Option("--event-is-censoring", help="The event column holds 1 for censored rows.")]
CovOpt = Annotated[str, typer.Option("--covariates", help="Comma-separated covariate columns.")]
EmbOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--embeddings", help="Embeddings file (.npz/.npy/.parquet) joined by case id or row order."),
]
IdOpt = Annotated[Optional[str], typer.Option("--id", help="Case id column (default: case_id if present).")]  # noqa: UP045
MethodOpt = Annotated[str, typer.Option("--method", help="cox (lifelines) or deepcox (MLP head).")]
CvOpt = Annotated[Optional[int], typer.Option("--cv", help="K-fold cross-validation.")]  # noqa: UP045
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the folds and the deep head.")]


def _spec(table, time, event, covariates, event_is_censoring, embeddings, id_column):
    from medvl.tasks.survival.run import TableSpec

    covs = [c.strip() for c in covariates.split(",") if c.strip()]
    return TableSpec(table=table, time=time, event=event, covariates=covs, event_is_censoring=event_is_censoring,
                     embeddings=embeddings, id_column=id_column)


def _config(method, penalizer, pca, ties, epochs, seed):
    from medvl.tasks.survival.model import SurvivalConfig

    return SurvivalConfig(method=method, penalizer=penalizer, pca_components=pca, ties=ties, epochs=epochs, seed=seed)


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


BagsOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--bags", help="Folder of <id>.h5 tile (or slice) features: train a bag-Cox model (ABMIL or bag "
                                "transformer) instead of a table model; ids in --id (slide_id or case_id)."),
]


def _fit_bags(bags: Path, table: Path, time: str, event: str, event_is_censoring: bool, id_column: str | None,
              seed: int, out: Path, bag: dict) -> Result:
    from medvl.train.survival_bags import BagSurvivalSpec, fit_bags

    spec = BagSurvivalSpec(features=bags, table=table, time=time, event=event, event_is_censoring=event_is_censoring,
                           id_column=id_column, seed=seed, **bag)
    rec = fit_bags(spec, out)
    lines = [f"bag-Cox ({spec.head}): {rec['n_train']} training bags, {rec['train_events']} events; training "
             f"Harrell C {rec['train_harrell_c']:.3f}"]
    if "test" in rec:
        lines.append(f"held out ({rec['n_test']} bags): {_fmt_metrics(rec['test'])}; log-rank p {rec['logrank_p']:.3g}")
    lines.append(f"model saved to {rec['model']}")
    return Result(rec, "\n".join(lines))


@command(app, "fit")
def fit(
    table: TableOpt,
    time: TimeOpt,
    event: EventOpt,
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = False,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    method: MethodOpt = "cox",
    penalizer: Annotated[float, typer.Option(help="Ridge penalty of the Cox fit.")] = 0.01,
    pca: Annotated[int, typer.Option(help="Principal components kept from the embeddings.")] = 16,
    ties: Annotated[str, typer.Option(help="Tie handling of the deep head: efron or breslow.")] = "efron",
    epochs: Annotated[int, typer.Option(help="Training steps of the deep head.")] = 200,
    cv: CvOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Model folder (default: <workspace>/models/survival).")] = None,  # noqa: UP045, E501
    bags: BagsOpt = None,
    head: Annotated[str, typer.Option(help="Bags: abmil, attention or transformer.")] = "abmil",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Bags: bags per Cox loss (accumulation).")] = 32,
    memory: Annotated[int, typer.Option(help="Bags: recent risks kept in the risk bank (0: none).")] = 0,
    sampler: Annotated[str, typer.Option(help="Bags: shuffled or event-balanced batches.")] = "shuffled",
    steps: Annotated[int, typer.Option(help="Bags: optimizer steps.")] = 200,
    lr: Annotated[float, typer.Option(help="Bags: learning rate.")] = 1e-3,
    max_items: Annotated[int, typer.Option("--max-items", help="Bags: tiles drawn per bag per step.")] = 512,
    supremix: Annotated[float, typer.Option(help="Bags: weight of the SupReMix contrastive term (0: off).")] = 0.0,
    split_column: Annotated[str, typer.Option("--split-column", help="Bags: column of the held-out split.")] = "split",
    test_split: Annotated[Optional[str], typer.Option("--test-split", help="Bags: value of --split-column held out "  # noqa: UP045
                                                      "for evaluation.")] = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Fit a survival model on the whole table (and cross-validate with --cv); saves the model folder. With --bags,
    a bag-Cox model on tile features, evaluated on the --test-split rows (Harrell and Uno C, AUC, IBS, KM)."""
    from medvl.errors import ConfigError
    from medvl.tasks.survival.run import fit_table
    from medvl.workspace import Workspace

    out = out or Workspace.resolve(workspace).models / "survival"
    if bags is not None:
        if covariates or embeddings is not None or cv:
            raise ConfigError("--bags trains on the bags alone: drop --covariates, --embeddings and --cv")
        return _fit_bags(bags, table, time, event, event_is_censoring, id_column, seed, out, {
            "head": head, "batch_size": batch_size, "memory": memory, "sampler": sampler, "steps": steps, "lr": lr,
            "max_items": max_items, "supremix": supremix, "split_column": split_column, "test_split": test_split})
    spec = _spec(table, time, event, covariates, event_is_censoring, embeddings, id_column)
    cfg = _config(method, penalizer, pca, ties, epochs, seed)
    rec = fit_table(spec, cfg, out=out, cv=cv, seed=seed)
    lines = [f"{method}: {rec['n']} cases, {rec['events']} events; training Harrell C {rec['train_harrell_c']:.3f}"]
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
    time: TimeOpt = "",
    event: EventOpt = "",
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = False,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    times: Annotated[str, typer.Option("--times", help="Comma-separated times for survival probabilities.")] = "",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write predictions (CSV or Parquet).")] = None,  # noqa: UP045
    keep_ids: Annotated[bool, typer.Option("--keep-ids", help="Include the case id column in --out.")] = False,
) -> Result:
    """Risk scores, risk groups and survival probabilities for the rows of a table."""
    from medvl.tasks.survival.model import SurvivalModel
    from medvl.tasks.survival.run import predict_table

    saved = SurvivalModel.load(model).record_.get("table", {})
    spec = _spec(table, time or saved.get("time", ""), event or saved.get("event", ""),
                 covariates or ",".join(saved.get("covariates", [])),
                 event_is_censoring or saved.get("event_is_censoring", False), embeddings, id_column)
    grid = [float(t) for t in times.split(",") if t.strip()]
    rec = predict_table(model, spec, out=out, times=grid, keep_ids=keep_ids)
    text = f"{rec['n']} predictions" + (f" written to {out}" if out else "")
    return Result(rec, text if out else None)


@command(app, "evaluate")
def evaluate(
    table: TableOpt,
    time: TimeOpt,
    event: EventOpt,
    covariates: CovOpt = "",
    event_is_censoring: CensOpt = False,
    embeddings: EmbOpt = None,
    id_column: IdOpt = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Evaluate this saved model.")] = None,  # noqa: UP045
    method: MethodOpt = "cox",
    penalizer: Annotated[float, typer.Option(help="Ridge penalty (with --cv).")] = 0.01,
    pca: Annotated[int, typer.Option(help="Principal components of the embeddings (with --cv).")] = 16,
    ties: Annotated[str, typer.Option(help="Deep head ties (with --cv).")] = "efron",
    epochs: Annotated[int, typer.Option(help="Deep head steps (with --cv).")] = 200,
    cv: CvOpt = None,
    seed: SeedOpt = 0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for metrics JSON and the KM plot.")] = None,  # noqa: UP045, E501
) -> Result:
    """Harrell C, Uno C, time-dependent AUC, integrated Brier score and KM log-rank p of a model or a CV run."""
    from medvl.tasks.survival.run import evaluate_table

    spec = _spec(table, time, event, covariates, event_is_censoring, embeddings, id_column)
    cfg = _config(method, penalizer, pca, ties, epochs, seed)
    rec = evaluate_table(spec, model_dir=model, config=cfg, cv=cv, seed=seed, report=report)
    text = f"{rec['mode']}: {_fmt_metrics(rec['metrics'])}; log-rank p {rec['logrank_p']:.3g}"
    return Result(rec, text)
