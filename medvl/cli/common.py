"""Shared machinery of every ``medvl`` command.

:func:`command` registers a function on a Typer app and adds the options every command has (``--json``, ``--debug``,
``--verbose``). The function returns its result as data (a dict, a list, or :class:`Result`); the wrapper prints it as
JSON on stdout under ``--json`` and as readable text otherwise. Errors become one line on stderr and a non-zero exit,
with the traceback only under ``--debug``.

Command modules must not import heavy libraries (torch, openslide, ...) at module level: ``medvl --help`` stays fast.
"""

import functools
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medvl.errors import MedvlError

JSON_HELP = "Print machine-readable JSON on stdout (nothing else goes there)."


@dataclass
class Result:
    """What a command returns: ``data`` for ``--json``; ``text`` (optional) for people."""

    data: Any
    text: str | None = None
    exit_code: int = 0


@dataclass
class CliState:
    json: bool = False
    debug: bool = False


STATE = CliState()

ConfigFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--config", help="Settings file (YAML/JSON) of this command; the flags given override it.",
                 show_default=False),
]

WorkspaceOpt = Annotated[
    Optional[Path],  # noqa: UP045 - Typer needs Optional at runtime on some versions
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $MEDVL_WORKSPACE, else the user data dir).",
        show_default=False,
    ),
]

#: the options of "never silently wrong" (one name everywhere)
RandomWeightsOpt = Annotated[bool, typer.Option(
    "--random-weights", help="Allow a model or tower without weights (a random initialisation); recorded in every "
    "output's provenance.")]
TrustProvenanceOpt = Annotated[bool, typer.Option(
    "--trust-provenance", help="Use stored vectors that carry no provenance record (older medvl, other tools) "
    "without checking them against the model; recorded in the output.")]
StrictDomainOpt = Annotated[bool, typer.Option(
    "--strict-domain", help="Refuse inputs of another kind than the model was trained on (else a warning).")]


def emit_line(record: dict[str, Any]) -> None:
    """Stream one JSON line on stdout (per-case status in batch commands) when ``--json`` is on."""
    if STATE.json:
        sys.stdout.write(json.dumps(record, default=_default) + "\n")
        sys.stdout.flush()


def echo(text: str) -> None:
    """Human-readable message on stderr (never pollutes JSON on stdout)."""
    typer.echo(text, err=True)


def fail(message: str, code: int = 2) -> None:
    """Print one error line on stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def command(app: typer.Typer, name: str | None = None, **kwargs: Any):
    """Register ``fn`` on ``app`` with the shared options, output rendering and error handling."""

    def decorator(fn):
        sig = inspect.signature(fn)
        extra = {
            "json_output": (Annotated[bool, typer.Option("--json", help=JSON_HELP)], False),
            "debug": (Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")], False),
            "verbose": (
                Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v, -vv).")],
                0,
            ),
        }

        @functools.wraps(fn)
        def wrapper(*args, json_output: bool = False, debug: bool = False, verbose: int = 0, **kw):
            return run_command(fn, args, kw, json_output=json_output, debug=debug, verbose=verbose)

        params = list(sig.parameters.values())
        for pname, (tp, default) in extra.items():  # Typer reads the options from the signature
            params.append(
                inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=tp)
            )
        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), **{k: v[0] for k, v in extra.items()}}
        del wrapper.__wrapped__
        app.command(name, **kwargs)(wrapper)
        return fn

    return decorator


def run_command(fn, args, kw, *, json_output: bool, debug: bool, verbose: int) -> None:
    from medvl.log import clear_warnings, collect_warnings, setup_logging

    STATE.json, STATE.debug = json_output, debug
    level = "DEBUG" if verbose >= 2 else "INFO" if verbose == 1 else "WARNING"
    setup_logging(level, quiet=json_output)
    clear_warnings()
    try:
        with collect_warnings() as warned:
            result = fn(*args, **kw)
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except MedvlError as exc:
        if debug:
            raise
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # an unexpected failure still gets one line, not a traceback
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for details)", err=True)
        raise typer.Exit(1) from None
    render(result, json_output, warned)
    code = result.exit_code if isinstance(result, Result) else 0
    if code:
        raise typer.Exit(code)


def render(result: Any, json_output: bool, warnings: list[str] | None = None) -> None:
    """Print a command's result: JSON (with the run's ``warnings``) or text; the warnings went to stderr already."""
    if result is None:
        return
    data, text = (result.data, result.text) if isinstance(result, Result) else (result, None)
    if json_output:
        if isinstance(data, dict):
            data = with_warnings(data, warnings or [])
        sys.stdout.write(json.dumps(data, default=_default) + "\n")
    elif text is not None:
        typer.echo(text)
    elif data is not None:
        import yaml

        typer.echo(yaml.safe_dump(json.loads(json.dumps(data, default=_default)), sort_keys=False).rstrip())


def with_warnings(data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``data`` with a ``warnings`` list: what it listed already, then the run's warnings not in it. A count under
    that key (a summary's number of warnings) moves to ``warning_count``."""
    listed = data.get("warnings", [])
    out = dict(data)
    if not isinstance(listed, list):
        out["warning_count"], listed = listed, []
    out["warnings"] = list(dict.fromkeys([*listed, *warnings]))
    return out


def _one_line(exc: BaseException) -> str:
    from medvl.cli.flags import name_flags

    text = str(exc).strip() or type(exc).__name__
    return name_flags(" ".join(text.split()))


def _default(obj: Any) -> Any:
    """Command output never fails on an odd value: what JSON cannot hold is printed as text."""
    from medvl.atomic import json_default

    try:
        return json_default(obj)
    except TypeError:
        return str(obj)
