"""``medvl train --config FILE --out DIR [--resume]``; ``torchrun --nproc-per-node N -m medvl train ...`` for DDP."""

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medvl.cli.common import Result, command

app = typer.Typer()


@command(app, "train")
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training recipe (YAML or JSON).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder: checkpoints, metrics, final model.")]
    = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Validate every data row and print the counts; no training.")]
    = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Train on the usable rows; the skipped ones are listed "
                                                              "in the run folder (data/<stage>.skipped.jsonl).")]
    = False,
    corpus: Annotated[Optional[Path], typer.Option(  # noqa: UP045 - Typer needs Optional at runtime
        "--corpus", help="Reports folder or file for the recipe's 'reports' text corpus (text recipes).")] = None,
) -> Result:
    """Train a model with a recipe (keep, two-stage, own data from a manifest, ...); several processes under torchrun.

    Relative data paths of the recipe (a manifest) are found in the config file's folder.
    """
    from medvl.errors import ConfigError
    from medvl.train import TrainConfig
    from medvl.train import train as run_training
    from medvl.train.check import check_data, check_text, resolve_data_paths

    cfg = TrainConfig.from_file(config)
    if corpus is not None:
        from medvl.train.data.text_corpus import with_corpus

        cfg = TrainConfig.from_dict(with_corpus(cfg.to_dict(), "reports", str(corpus)))
    cfg = resolve_data_paths(cfg, config.parent, skip_bad=skip_bad)
    if check:
        result = check_data(cfg)
        return Result(result, check_text(result))
    if out is None:
        raise ConfigError("--out: give the run folder (or --check to validate the data only)")
    summary = run_training(cfg, out, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the first process reports
        return None
    return Result(summary, summary_text(summary))


def summary_text(summary: dict[str, Any]) -> str:
    """The run summary for people: steps, time, loss, the model folder, and every evaluation before -> after."""
    text = (f"trained {summary['global_steps']} steps ({', '.join(summary['stages'])}) in {summary['seconds']} s "
            f"on {summary['processes']} process(es); final loss {summary['final_loss']:.4f}; model: {summary['model']}")
    best = summary.get("best")
    if best:
        text += (f"\nbest {best['metric']} {best['value']:.4f} at step {best['step']} of {best['stage']}: "
                 f"{best['model']}")
    for stage, result in summary.get("stage_results", {}).items():
        if result.get("budget_reached"):
            text += f"\n{stage}: time budget reached after {result['steps']} steps"
    for stage, evaluations in summary.get("evaluations", {}).items():
        for name, ev in evaluations.items():
            before, after = ev.get("before", {}), ev.get("after", {})
            moved = [f"{k} {before[k]:.3f} -> {v:.3f}" for k, v in after.items()
                     if isinstance(v, float) and isinstance(before.get(k), float)]
            text += f"\n{stage} {name}: " + ", ".join(moved)
    return text
