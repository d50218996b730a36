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
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, metrics, final model.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")] = False,
    corpus: Annotated[Optional[Path], typer.Option(  # noqa: UP045 - Typer needs Optional at runtime
        "--corpus", help="Reports folder or file for the recipe's 'reports' text corpus (text recipes).")] = None,
) -> Result:
    """Train a model with a recipe (keep, two-stage, ...); several processes under torchrun."""
    from medvl.train import TrainConfig
    from medvl.train import train as run_training

    cfg = TrainConfig.from_file(config)
    if corpus is not None:
        from medvl.train.data.text_corpus import with_corpus

        cfg = TrainConfig.from_dict(with_corpus(cfg.to_dict(), "reports", str(corpus)))
    summary = run_training(cfg, out, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the first process reports
        return None
    return Result(summary, summary_text(summary))


def summary_text(summary: dict[str, Any]) -> str:
    """The run summary for people: steps, time, loss, the model folder, and every evaluation before -> after."""
    text = (f"trained {summary['global_steps']} steps ({', '.join(summary['stages'])}) in {summary['seconds']} s "
            f"on {summary['processes']} process(es); final loss {summary['final_loss']:.4f}; model: {summary['model']}")
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
