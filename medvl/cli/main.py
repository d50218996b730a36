"""Entry point of the ``medvl`` command.

Command groups (``medvl slide ...``) and top-level commands (``medvl doctor``) live in one module each under
``medvl.cli``; this module only assembles them. Each module exposes a Typer ``app``.
"""

import importlib
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

app = typer.Typer(
    name="medvl",
    help="Disease-centric vision-language models for pathology and radiology.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medvl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """medvl: read slides and CT, build disease knowledge, train and apply vision-language models."""


def build_app() -> typer.Typer:
    for module in TOP_LEVEL:
        app.registered_commands.extend(importlib.import_module(module).app.registered_commands)
    for name, (module, help_text) in GROUPS.items():
        app.add_typer(importlib.import_module(module).app, name=name, help=help_text, no_args_is_help=True)
    return app


build_app()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
