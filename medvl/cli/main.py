"""Entry point of the ``medvl`` command.

Command groups (``medvl slide ...``) and top-level commands (``medvl doctor``) live in one module each under
``medvl.cli``; this module only assembles them. Each module exposes a Typer ``app``.
"""

import importlib
import sys
from typing import Annotated

import typer

from medvl import __version__

#: group name -> (module, help)
GROUPS = {
    "ontology": ("medvl.cli.ontology", "Disease knowledge graph: build, search, show, groups, prompts, train-text."),
    "slide": ("medvl.cli.slide", "Whole-slide images: info, tile, extract, embed, heatmap, stain-fit, qupath, "
                                 "evaluate."),
    "ct": ("medvl.cli.ct", "CT volumes: info, preprocess, embed, slices."),
    "index": ("medvl.cli.index", "Retrieval index: build, search."),
    "survival": ("medvl.cli.survival", "Survival models: fit, predict, evaluate."),
    "models": ("medvl.cli.models", "Published encoders as cards: list, show, check, pack, unpack."),
    "cohort": ("medvl.cli.cohort", "Cohort manifests: leakage and duplicate check."),
}
#: modules whose commands sit at the top level
TOP_LEVEL = (
    "medvl.cli.doctor",
    "medvl.cli.demo",
    "medvl.cli.app",
    "medvl.cli.train",
    "medvl.cli.zeroshot",
    "medvl.cli.eval",
    "medvl.cli.run",
)


def _new_app() -> typer.Typer:
    app = typer.Typer(
        name="medvl",
        help="Disease-centric vision-language models for pathology and radiology.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    return app


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medvl {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """medvl: read slides and CT, build disease knowledge, train and apply vision-language models."""


def build_app(group: str | None = None) -> typer.Typer:
    """The ``medvl`` command; with ``group`` (a name in :data:`GROUPS`), only that group, so ``medvl ontology
    search`` does not import the modules of every other command."""
    app = _new_app()
    if group not in GROUPS:
        for module in TOP_LEVEL:
            app.registered_commands.extend(importlib.import_module(module).app.registered_commands)
    for name, (module, help_text) in GROUPS.items():
        if group in GROUPS and name != group:
            continue
        app.add_typer(importlib.import_module(module).app, name=name, help=help_text, no_args_is_help=True)
    return app


def _group_named(argv: list[str]) -> str | None:
    """The command group the command line names (``None`` for a top-level command or plain ``--help``): the first
    word after the root's own options, which take no value."""
    words = [a for a in argv if a not in ("--version", "--help", "-h")]
    return words[0] if words and words[0] in GROUPS else None


def __getattr__(name: str) -> typer.Typer:
    # ``from medvl.cli.main import app`` (tests, Typer's runner): the whole command, built on first use
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    build_app(_group_named(sys.argv[1:]))()


if __name__ == "__main__":
    main()
