"""Published encoders by card name: build the architecture, check and load the weights, apply the card's output.

:func:`load_card_encoder` is the one function that turns a card name (and weights from a path or the local model
store) into a ready encoder: a :class:`CardEncoder` carrying the module, the card's preprocessing (``data_config``)
and the tiling resolution (``mpp``). ``medvl slide extract --encoder NAME`` goes through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from medvl.errors import ConfigError, InputError
from medvl.log import get_logger
from medvl.models.builders import Backbone, BuildContext, build_backbone
from medvl.models.card import ModelCard
from medvl.models.catalogue import find_card, resolve_card
from medvl.models.tower import Tower

log = get_logger(__name__)

__all__ = ["CardEncoder", "build_card_backbone", "card_weights_label", "count_parameters", "find_card",
           "load_card_encoder", "resolve_card", "weights_folder"]


def card_weights_label(card: ModelCard, weights: str | Path | None = None, store: str | Path | None = None) -> str:
    """What identifies a card's weights and preprocessing in output files (resume compares it): the card name, the
    weights' fingerprint (their SHA-256 for a model installed in the store, else the file name and a fingerprint of
    its size and first and last MiB) and a hash of the card, so features made with other weights or an edited card are
    never reused."""
    import hashlib
    import json

    card_hash = hashlib.sha256(json.dumps(card.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    if weights is not None:
        from medvl.models.card_weights import find_weight_file
        from medvl.models.store import quick_fingerprint

        file = find_weight_file(card, weights)
        return f"{card.name}@{file.name}:{quick_fingerprint(file)}/card:{card_hash}"
    from medvl.models.store import ModelStore

    installed = ModelStore(store)
    if not installed.installed(card.name):
        return f"{card.name}/card:{card_hash}"
    files = installed.manifest(card.name)["files"]
    digest = next((m["sha256"] for rel, m in sorted(files.items()) if rel.startswith("weights/")), "")
    return f"{card.name}@sha256:{digest[:16]}/card:{card_hash}"


def build_card_backbone(card: ModelCard, kwargs: dict[str, Any] | None = None, device: str | None = None,
                        context: BuildContext | None = None) -> Backbone:
    """The card's architecture with random weights (``device="meta"`` allocates nothing). ``kwargs`` override the
    card's builder kwargs (reduced variants)."""
    merged = {**card.builder.kwargs, **(kwargs or {})}
    scope = torch.device(device) if device is not None else contextlib.nullcontext()
    with scope:
        return build_backbone(card.builder.name, merged, context)


def count_parameters(card: ModelCard, kwargs: dict[str, Any] | None = None) -> int:
    """Parameters of the card's architecture, counted on the meta device."""
    module = build_card_backbone(card, kwargs, device="meta").module
    return int(sum(p.numel() for p in module.parameters()))


class CardEncoder(Tower):
    """A published encoder with the card's output selection.

    Attributes:
        card: the card.
        backbone: the built architecture (weights in ``backbone.module``).
        embed_dim: width of :meth:`encode`'s output.
        data_config: the card's preprocessing (tile cards).
        mpp: µm per pixel the tiles are cut at (tile cards).
    """

    def __init__(self, card: ModelCard, backbone: Backbone, reduced: bool = False):
        super().__init__()
        self.card, self.backbone = card, backbone
        self.modality = {"tile": "image", "ct": "volume", "slide": "bag"}[card.modality]
        self.embed_dim = int((card.reduced.dim if reduced else None) or card.embedding.dim)
        self.data_config = card.tile.data_config() if card.tile is not None else None
        if reduced and self.data_config is not None and card.reduced.input_px:
            px = card.reduced.input_px
            self.data_config = {**self.data_config, "input_size": (3, px, px)}
            self.data_config.pop("resize_px", None)
        self.mpp = card.mpp
        output = card.embedding.output
        if output != "pooled" and not backbone.has_tokens:
            raise ConfigError(f"card '{card.name}': output '{output}' needs token outputs, which builder "
                              f"'{card.builder.name}' does not give")

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed input ``[B, C, ...]`` -> ``[B, embed_dim]`` as the card defines it."""
        output = self.card.embedding.output
        if output == "pooled":
            feats = self.backbone.pooled(batch)
        else:
            tokens = self.backbone.tokens(batch)
            cls = tokens[:, 0]
            patches = tokens[:, self.backbone.num_prefix_tokens:].mean(dim=1)
            feats = {"cls": cls, "patch_mean": patches}.get(output)
            if feats is None:
                feats = torch.cat([cls, patches], dim=-1)
        if self.card.embedding.normalize:
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats


def weights_folder(card: ModelCard, weights: str | Path | None, store: str | Path | None = None) -> Path:
    """Where ``card``'s weights are: ``weights`` when given, else its folder in the model store (an
    :class:`InputError` when it is not installed)."""
    if weights is not None:
        return Path(weights)
    from medvl.models.store import ModelStore

    return ModelStore(store).weights_path(card.name)


def load_card_encoder(
    card: ModelCard | str,
    weights: str | Path | None = None,
    *,
    store: str | Path | None = None,
    trust_pickle: bool = False,
    trust_remote_code: bool = False,
    cards_dirs: Iterable[str | Path] = (),
    reduced: bool = False,
    device: str | torch.device = "cpu",
) -> CardEncoder:
    """A ready encoder from a card name and its weights.

    Args:
        card: a card or its name.
        weights: a weight file or folder; ``None`` uses the model installed in the local store.
        store: the model store folder (default: ``MEDVL_MODELS``, else the workspace's).
        trust_pickle: accept weight files that need full unpickling.
        trust_remote_code: allow the code shipped with hub weights to run (cards with ``remote_code`` and no own
            implementation need it).
        cards_dirs: extra card folders.
        reduced: build the card's reduced variant (``card.reduced``: same key layout, smaller; for tests).
        device: where the model goes.

    The weights are checked against the card before loading; any missing, unexpected or mis-shaped key, or a
    truncated file, is an :class:`InputError` naming the file and what differs.
    """
    from medvl.models.card_weights import check_weights, find_weight_file, read_state

    card = resolve_card(card, cards_dirs, store)
    kwargs = card.reduced.kwargs if reduced else None
    folder = weights_folder(card, weights, store)
    context = BuildContext(folder if folder.is_dir() else folder.parent, trust_remote_code)
    if not card.checkable:  # hub remote code (or no architecture: building says why)
        return _loaded(CardEncoder(card, build_card_backbone(card, kwargs, context=context), reduced), device)
    report = check_weights(card, folder, trust_pickle=trust_pickle, kwargs=kwargs)
    if not report.ok:
        raise InputError(report.file, f"weights do not match card '{card.name}': {report.problem()}")
    for warning in report.warnings:
        log.warning(f"{card.name}: {warning}")
    state = read_state(card, find_weight_file(card, folder), trust_pickle)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # keys the card marks optional keep a fixed init
        backbone = build_card_backbone(card, kwargs, context=context)
    backbone.module.load_state_dict(state, strict=not card.weights.optional)
    return _loaded(CardEncoder(card, backbone, reduced), device)


def _loaded(encoder: CardEncoder, device: str | torch.device) -> CardEncoder:
    """``encoder`` marked as holding its published weights, on ``device``, in eval mode."""
    encoder.random_weights = False
    return encoder.to(device).eval()
