"""The catalogue of model cards: every ``*.json`` / ``*.yaml`` card in medvl's own folder and in user folders.

Folders are scanned the way open_clip scans ``model_configs/``: medvl's ``medvl/models/cards/``, then each folder of
the ``MEDVL_CARDS`` environment variable (``os.pathsep``-separated), then folders passed explicitly (``--cards DIR``).
A card's ``name`` must be unique: a user card with the name of a built-in card is an error (not a silent override),
so a name always means one model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from medvl.errors import ConfigError, InputError
from medvl.models.card import ModelCard

__all__ = [
    "CARDS_DIR", "ENV_VAR", "Catalogue", "card_folders", "find_card", "get_card", "list_cards", "load_card_file",
    "resolve_card",
]

CARDS_DIR = Path(__file__).resolve().parent / "cards"
ENV_VAR = "MEDVL_CARDS"
SUFFIXES = (".json", ".yaml", ".yml")


def card_folders(extra: Iterable[str | Path] = ()) -> list[Path]:
    """medvl's card folder, the ``MEDVL_CARDS`` folders, then ``extra``."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [CARDS_DIR, *(Path(p).expanduser() for p in env), *(Path(p).expanduser() for p in extra)]


def load_card_file(path: str | Path) -> ModelCard:
    """Read and validate one card file; errors name the file."""
    return ModelCard.from_file(path)


class Catalogue:
    """The cards found in a list of folders, by name."""

    def __init__(self, folders: Iterable[str | Path] | None = None):
        self.folders = [Path(f) for f in (card_folders() if folders is None else folders)]
        self.cards: dict[str, ModelCard] = {}
        self.files: dict[str, Path] = {}
        for folder in self.folders:
            self._scan(folder)

    def _scan(self, folder: Path) -> None:
        if not folder.is_dir():
            raise InputError(folder, "card folder not found")
        for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()):
            card = load_card_file(path)
            if card.name in self.cards:
                raise ConfigError(f"{path}: card name '{card.name}' is already defined by {self.files[card.name]}")
            self.cards[card.name] = card
            self.files[card.name] = path

    def names(self, modality: str | None = None) -> list[str]:
        """Card names, tile encoders first, then slide and CT encoders (by name within each)."""
        order = {"tile": 0, "slide": 1, "ct": 2}
        names = [n for n, c in self.cards.items() if modality is None or c.modality == modality]
        return sorted(names, key=lambda n: (order[self.cards[n].modality], n))

    def get(self, name: str) -> ModelCard:
        if name not in self.cards:
            raise ConfigError(f"unknown model card '{name}'; known cards: {', '.join(sorted(self.cards))}")
        return self.cards[name]


def list_cards(modality: str | None = None, extra: Iterable[str | Path] = ()) -> list[ModelCard]:
    """Every card (tile, then slide, then CT encoders), optionally of one modality."""
    cat = Catalogue(card_folders(extra))
    return [cat.cards[n] for n in cat.names(modality)]


def get_card(name: str, extra: Iterable[str | Path] = ()) -> ModelCard:
    """The card called ``name``; a clear error listing the known names otherwise."""
    return Catalogue(card_folders(extra)).get(name)


def resolve_card(card: ModelCard | str, cards_dirs: Iterable[str | Path] = (),
                 store: str | Path | None = None) -> ModelCard:
    """A card object from a card or its name: built-in, ``MEDVL_CARDS`` or ``cards_dirs`` cards first, then the card
    of a model installed in the store (a bundle packed elsewhere with a user card)."""
    if isinstance(card, ModelCard):
        return card
    from medvl.models.store import ModelStore

    catalogue = Catalogue(card_folders(cards_dirs))
    if str(card) not in catalogue.cards:
        installed = ModelStore(store)
        if installed.installed(str(card)):
            return installed.card(str(card))
    return catalogue.get(str(card))


def find_card(name: str, cards_dirs: Iterable[str | Path] = (), store: str | Path | None = None) -> ModelCard | None:
    """The card called ``name`` (catalogue or store), or ``None`` when no card has that name."""
    try:
        return resolve_card(name, cards_dirs, store)
    except ConfigError:
        return None
