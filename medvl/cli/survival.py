"""``medvl survival fit|predict|evaluate``: Cox and deep-Cox models on a CSV/Parquet table; bag-Cox models on tile
features (``fit --bags``).

Model settings come from :class:`~medvl.tasks.survival.model.SurvivalConfig` (``--config FILE``), overridden by the
flags given; a flag left out keeps the file's value or the dataclass default. ``fit --bags`` takes the settings of
:class:`~medvl.train.survival_bags.BagSurvivalSpec` from its ``Bags:`` flags (a flag left out keeps the default).
``predict`` and ``evaluate`` with ``--model`` take the outcome coding (event or censoring column, time unit) saved
with the model.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import ConfigFileOpt, Result, TrustProvenanceOpt, WorkspaceOpt, command

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


def _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column, trust_provenance=False):
    from medvl.tasks.survival.run import TableSpec

    covs = [c.strip() for c in covariates.split(",") if c.strip()]
    return TableSpec(table=table, time=time or "", event=event or "", covariates=covs,
                     event_is_censoring=event_is_censoring, time_unit=time_unit, embeddings=embeddings,
                     id_column=id_column, trust_provenance=trust_provenance)


def _config(path, method, penalizer, pca, ties, epochs, seed):
    from medvl.cli.flags import config_from
    from medvl.tasks.survival.model import SurvivalConfig

    return config_from(SurvivalConfig, path, method=method, penalizer=penalizer, pca_components=pca, ties=ties,
                       epochs=epochs, seed=seed)


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


BagsOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--bags", help="Folder of <id>.h5 tile (or slice) features: train a bag-Cox model (ABMIL or bag "
                                "transformer) instead of a table model; ids in --id (slide_id or case_id)."),
]

BagBatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Bags: bags per Cox loss (accumulation) "  # noqa: UP045
                                                    "[default: 32].")]
BagItemsOpt = Annotated[Optional[int], typer.Option("--max-items", help="Bags: tiles drawn per bag per step "  # noqa: UP045
                                                    "[default: 512].")]
BagSupremixOpt = Annotated[Optional[float], typer.Option(help="Bags: weight of the SupReMix contrastive term "  # noqa: UP045
                                                         "(0: off).")]
BagSplitColumnOpt = Annotated[Optional[str], typer.Option("--split-column", help="Bags: column of the held-out "  # noqa: UP045
                                                          "split [default: split].")]
BagTestSplitOpt = Annotated[Optional[str], typer.Option("--test-split", help="Bags: value of --split-column held "  # noqa: UP045
                                                        "out for evaluation.")]


def _fit_bags(bags: Path, table: Path, out: Path, flags: dict) -> Result:
    from medvl.cli.flags import config_from
    from medvl.errors import ConfigError
    from medvl.train.survival_bags import BagSurvivalSpec, fit_bags

    if not flags.get("time") or not flags.get("event"):
        raise ConfigError("--bags needs --time and --event (the outcome columns of --table)")
    spec = config_from(BagSurvivalSpec, None, features=str(bags), table=str(table), **flags)
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
    trust_provenance: TrustProvenanceOpt = False,
    bags: BagsOpt = None,
    head: Annotated[Optional[str], typer.Option(help="Bags: abmil, attention or transformer [default: abmil].")] = None,  # noqa: UP045, E501
    batch_size: BagBatchOpt = None,
    memory: Annotated[Optional[int], typer.Option(help="Bags: recent risks kept in the risk bank (0: none).")] = None,  # noqa: UP045, E501
    sampler: Annotated[Optional[str], typer.Option(help="Bags: shuffled or event-balanced batches.")] = None,  # noqa: UP045
    steps: Annotated[Optional[int], typer.Option(help="Bags: optimizer steps [default: 200].")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(help="Bags: learning rate [default: 0.001].")] = None,  # noqa: UP045
    max_items: BagItemsOpt = None,
    supremix: BagSupremixOpt = None,
    split_column: BagSplitColumnOpt = None,
    test_split: BagTestSplitOpt = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Fit a survival model on the whole table (and cross-validate with --cv); saves the model folder. With --bags,
    a bag-Cox model on tile features, evaluated on the --test-split rows (Harrell and Uno C, AUC, IBS, KM)."""
    from medvl.errors import ConfigError
    from medvl.tasks.survival.run import fit_table
    from medvl.workspace import Workspace

    out = out or Workspace.resolve(workspace).models / "survival"
    if bags is not None:
        if covariates or embeddings is not None or cv or config is not None:
            raise ConfigError("--bags trains on the bags alone: drop --covariates, --embeddings, --cv and --config")
        return _fit_bags(bags, table, out, {
            "time": time, "event": event, "event_is_censoring": event_is_censoring, "id_column": id_column,
            "seed": seed, "head": head, "batch_size": batch_size, "memory": memory, "sampler": sampler,
            "steps": steps, "lr": lr, "max_items": max_items, "supremix": supremix, "split_column": split_column,
            "test_split": test_split})
    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column,
                 trust_provenance)
    cfg = _config(config, method, penalizer, pca, ties, epochs, seed)
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
    trust_provenance: TrustProvenanceOpt = False,
) -> Result:
    """Risk scores, risk groups and survival probabilities for the rows of a table."""
    from medvl.tasks.survival.run import predict_table

    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column,
                 trust_provenance)
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
    trust_provenance: TrustProvenanceOpt = False,
) -> Result:
    """Harrell C, Uno C, time-dependent AUC, integrated Brier score and KM log-rank p of a model or a CV run."""
    from medvl.tasks.survival.run import evaluate_table

    spec = _spec(table, time, event, covariates, event_is_censoring, time_unit, embeddings, id_column,
                 trust_provenance)
    cfg = _config(config, method, penalizer, pca, ties, epochs, seed)
    rec = evaluate_table(spec, model_dir=model, config=cfg, cv=cv, seed=cfg.seed, report=report)
    text = f"{rec['mode']}: {_fmt_metrics(rec['metrics'])}; log-rank p {rec['logrank_p']:.3g}"
    return Result(rec, text)
