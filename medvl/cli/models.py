"""``medvl models list|show|check|pack|unpack``: published encoders as cards, and offline bundles."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, WorkspaceOpt, command

app = typer.Typer(no_args_is_help=True, help="Published encoders as cards: list, show, check, pack, unpack.")

NameArg = Annotated[str, typer.Argument(help="Card name (see `medvl models list`).")]
CardsOpt = Annotated[
    Optional[list[Path]],  # noqa: UP045 - Typer reads Optional at runtime
    typer.Option("--cards", help="Extra folder of card files (repeatable; also $MEDVL_CARDS)."),
]
StoreOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--store", help="Model store folder (default: $MEDVL_MODELS, else <workspace>/models/published)."),
]
TrustPickleOpt = Annotated[bool, typer.Option("--trust-pickle", help="Accept weight files that need full unpickling "
                                              "(they can run code): only for files you trust.")]


def _store(store, workspace):
    from medvl.models.store import ModelStore

    return ModelStore(store, workspace)


def _card(name: str, cards, store, workspace):
    from medvl.models.catalogue import resolve_card

    return resolve_card(name, cards or (), _store(store, workspace).root)


@command(app, "list")
def list_(
    modality: Annotated[Optional[str], typer.Option("--modality", help="tile, slide or ct.")] = None,  # noqa: UP045
    cards: CardsOpt = None,
    store: StoreOpt = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Every card: name, modality, embedding dimension, input, licence, and whether its weights are installed."""
    from medvl.errors import ConfigError
    from medvl.models.catalogue import list_cards

    if modality is not None and modality not in ("tile", "slide", "ct"):
        raise ConfigError(f"--modality must be tile, slide or ct, got '{modality}'")
    installed = _store(store, workspace)
    rows = [{**c.summary(), "installed": installed.installed(c.name)} for c in list_cards(modality, cards or ())]
    width = max((len(r["name"]) for r in rows), default=4)
    lines = [f"{'name':<{width}}  {'modality':<8} {'dim':>5}  {'input':<34} {'licence':<28} installed"]
    lines += [f"{r['name']:<{width}}  {r['modality']:<8} {r['dim']:>5}  {r['input']:<34} {r['licence'][:28]:<28} "
              f"{'yes' if r['installed'] else 'no'}" for r in rows]
    return Result(rows, "\n".join(lines))


@command(app, "show")
def show(name: NameArg, cards: CardsOpt = None, store: StoreOpt = None, workspace: WorkspaceOpt = None) -> Result:
    """The whole card: architecture, input, embedding, weight layout, licence, citation, sources, what is missing."""
    card = _card(name, cards, store, workspace)
    installed = _store(store, workspace)
    data = {**card.to_dict(), "installed": installed.installed(card.name),
            "store_path": str(installed.path(card.name))}
    return Result(data)


@command(app, "check")
def check(
    name: NameArg,
    path: Annotated[Optional[Path], typer.Argument(help="Weight file or folder (default: the installed model).")] = None,  # noqa: UP045, E501
    trust_pickle: TrustPickleOpt = False,
    cards: CardsOpt = None,
    store: StoreOpt = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Does a weight file or folder match the card? Missing, unexpected and mis-shaped keys, before anything runs."""
    from medvl.errors import ConfigError, InputError
    from medvl.models.card_weights import check_weights

    card = _card(name, cards, store, workspace)
    if not card.checkable:
        raise ConfigError(f"card '{card.name}' has no medvl architecture ({'; '.join(card.not_available)}): its "
                          "weights cannot be checked key by key")
    installed = _store(store, workspace)
    target = path if path is not None else installed.weights_path(card.name)
    report = check_weights(card, target, trust_pickle=trust_pickle)
    if not report.ok:
        raise InputError(report.file, f"weights do not match card '{card.name}': {report.problem()}")
    for warning in report.warnings:
        _warn(warning)
    data = report.to_dict()
    if path is None:
        data["checksums_failed"] = installed.verify(card.name)
        if data["checksums_failed"]:
            raise InputError(installed.path(card.name), f"installed files changed since unpacking: "
                                                        f"{', '.join(data['checksums_failed'])}")
    return Result(data, f"{card.name}: {report.file} matches the card ({report.matched} tensors)")


@command(app, "pack")
def pack(
    name: NameArg,
    path: Annotated[Path, typer.Argument(help="Weight file or the folder holding it (as downloaded).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write (.tar).")],
    licence: Annotated[Optional[Path], typer.Option("--licence", help="Licence text to ship (default: a LICENSE file "  # noqa: UP045
                                                    "beside the weights, else the card's licence statement).")] = None,
    trust_pickle: TrustPickleOpt = False,
    cards: CardsOpt = None,
    store: StoreOpt = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Check the weights against the card, then write one bundle: weights, card, SHA-256 checksums, licence text."""
    from medvl.models.store import pack_bundle

    card = _card(name, cards, store, workspace)
    rec = pack_bundle(card, path, out, licence=licence, trust_pickle=trust_pickle)
    for warning in rec["warnings"]:
        _warn(warning)
    size = f"{rec['bytes'] / 2**20:.1f} MiB"
    return Result(rec, f"{card.name}: wrote {rec['bundle']} ({size}, {len(rec['files'])} files)")


@command(app, "unpack")
def unpack(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `medvl models pack`.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an installed model of the same name.")] = False,
    store: StoreOpt = None,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Verify a bundle's checksums and install it into the model store (atomically: all or nothing)."""
    from medvl.models.store import unpack_bundle

    rec = unpack_bundle(bundle, _store(store, workspace), force=force)
    return Result(rec, f"{rec['card']}: installed in {rec['installed']} (checksums verified)")


def _warn(message: str) -> None:
    """Through the log: printed once on stderr and listed in the ``--json`` output's ``warnings``."""
    from medvl.log import get_logger

    get_logger("medvl.cli.models").warning("%s", message)
