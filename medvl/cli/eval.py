"""``medvl eval --config FILE``: an evaluation report folder (JSON metrics + PNG plots)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, command

app = typer.Typer()


@command(app, "eval")
def evaluate(
    config: Annotated[Path, typer.Option("--config", help="Evaluation config (YAML/JSON), see medvl/configs/eval/.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder (overrides the config's 'out').")] = None,  # noqa: UP045, E501
) -> Result:
    """Survival, linear-probe, retrieval and zero-shot evaluation: metrics.json, ROC/KM/calibration/recall plots."""
    from medvl.config import read_config_file
    from medvl.tasks.report import EvalConfig, run_eval

    data = read_config_file(config)
    if out is not None:
        data["out"] = str(out)
    base = config.parent
    for section in data.values():  # relative paths in the file are relative to the file
        if isinstance(section, dict):
            for key in ("table", "embeddings", "queries", "gallery"):
                if isinstance(section.get(key), str) and not Path(section[key]).is_absolute():
                    section[key] = str(base / section[key])
    cfg = EvalConfig.from_dict(data, source=str(config))
    report = run_eval(cfg)
    lines = [f"report written to {report['out']}"]
    for name in ("survival", "probe", "retrieval", "zeroshot"):
        if name in report:
            metrics = report[name]["metrics"]
            lines.append(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
    return Result(report, "\n".join(lines))
