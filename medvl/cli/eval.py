"""``medvl eval --config FILE``: an evaluation report folder (JSON metrics + PNG plots)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, WorkspaceOpt, command

#: a config path with this prefix is read from the workspace
WORKSPACE_PREFIX = "workspace:"

app = typer.Typer()


@command(app, "eval")
def evaluate(
    config: Annotated[Path, typer.Option("--config", help="Evaluation config (YAML/JSON), see medvl/configs/eval/.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder (overrides the config's 'out').")] = None,  # noqa: UP045, E501
    workspace: WorkspaceOpt = None,
) -> Result:
    """Survival, linear-probe, retrieval, zero-shot, report-classification and caption->concept evaluation."""
    from medvl.config import read_config_file
    from medvl.tasks.report import EvalConfig, run_eval

    data = read_config_file(config)
    if out is not None:
        data["out"] = str(out)
    for section in data.values():
        if isinstance(section, dict):
            for key in ("table", "embeddings", "queries", "gallery", "reports", "captions", "cuis"):
                if isinstance(section.get(key), str):
                    section[key] = str(_resolve(section[key], config.parent, workspace))
    cfg = EvalConfig.from_dict(data, source=str(config))
    report = run_eval(cfg)
    lines = [f"report written to {report['out']}"]
    for name in ("survival", "probe", "retrieval", "zeroshot", "report_classification", "caption_concepts"):
        if name in report:
            metrics = report[name]["metrics"]
            lines.append(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
    return Result(report, "\n".join(lines))


def _resolve(value: str, base: Path, workspace: Optional[Path]) -> Path:  # noqa: UP045
    """``workspace:REL`` from the workspace; other relative paths from the config file's folder."""
    if value.startswith(WORKSPACE_PREFIX):
        from medvl.workspace import Workspace

        return Workspace.resolve(workspace).root / value.removeprefix(WORKSPACE_PREFIX)
    path = Path(value)
    return path if path.is_absolute() else base / path
