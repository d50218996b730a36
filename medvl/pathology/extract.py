"""Tile feature extraction with any registered image tower (or a medvl checkpoint's image tower).

Tiles are read in parallel by :func:`~medvl.pathology.loader.iter_tile_batches` while the model runs. Preprocessing
is the one image transform (:mod:`medvl.models.transforms`) of the tower: a checkpoint's is the one it was trained
with; a bare tower's comes from its data config. It runs on the device as one batched operation. On CUDA the forward
runs in bf16 autocast with channels_last memory format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.io.slide import Slide
from medvl.log import get_logger, progress, warn
from medvl.pathology.loader import iter_tile_batches
from medvl.pathology.tiling import TileGrid
from medvl.provenance import RANDOM_HINT, ModelPrint

log = get_logger(__name__)

__all__ = [
    "EncoderSpec", "ExtractConfig", "LazyTileEncoder", "TileEncoder", "card_of", "card_tiling", "encoder_label",
    "encoder_print", "extract_features", "load_tile_encoder", "model_tile_encoder", "resolve_device",
]


@dataclass
class EncoderSpec(Config):
    """Which model embeds the tiles.

    Attributes:
        name: a registered image tower (``timm``, ``timm-tiny``, ...) or a medvl checkpoint directory.
        model_name: timm architecture for the ``timm`` tower.
        weights: local weights file for the tower.
        img_size: model input size override (ViTs).
        project: with a checkpoint, store joint-space (projected, normalised) embeddings instead of raw features.
        trust_pickle: accept a pickle-based weights file that needs full unpickling (it can run code).
        trust_remote_code: let a model card's hub code run (cards published with their own Python code).
        random_weights: allow an encoder without weights (a random initialisation, seed 0): tests and baselines.
        strict_domain: refuse a checkpoint trained on another kind of image than slides (else a warning).
        stain: a stain fit (``medvl slide stain-fit`` JSON) applied to every tile before the model's preprocessing.

    ``name`` may also be a model card (``medvl models list``): the card's architecture, preprocessing and output,
    with ``weights`` or the model installed in the local store.
    """

    name: str = "timm-tiny"
    model_name: str | None = None
    weights: str | None = None
    img_size: int | None = None
    project: bool = False
    trust_pickle: bool = False
    trust_remote_code: bool = False
    random_weights: bool = False
    strict_domain: bool = False
    stain: str | None = None


@dataclass
class ExtractConfig(Config):
    """How extraction runs.

    Attributes:
        batch_size: tiles per forward pass.
        workers: tile reader threads.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        amp: bf16 autocast on CUDA.
        channels_last: channels_last memory format on CUDA.
    """

    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True

    def validate(self) -> None:
        if self.batch_size < 1 or self.workers < 0:
            raise ConfigError("ExtractConfig: batch_size must be >= 1 and workers >= 0")


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available")
    return dev


@dataclass
class TileEncoder:
    """A model ready to embed uint8 tiles: its transform, forward and print in one place.

    Attributes:
        model: the tower (``encode(batch) -> [B, D]``).
        name: the readable encoder name recorded as the ``encoder`` attribute (what CLAM/TRIDENT tools show).
        embed_dim: width of the stored features.
        transform: the image transform the tower takes (:func:`medvl.models.transforms.image_transform`).
        model_print: which weights make the features (:class:`medvl.provenance.ModelPrint`): what reuse and consumers
            check, by content.
        projected: whether outputs are joint-space embeddings.
        project_fn: maps raw tower features to the joint space (checkpoints only).
        owner: the module that holds ``model`` and the projection (moved to the device with it).
        stain: the stain normalisation applied to the uint8 tiles first (``None``: none).
    """

    model: Any
    name: str
    embed_dim: int
    transform: Any
    model_print: ModelPrint
    projected: bool = False
    project_fn: Any = None
    owner: Any = None
    stain: Any = None

    def get(self) -> TileEncoder:
        return self

    @property
    def stain_label(self) -> str:
        """``none``, or the stain fit's ``METHOD:FINGERPRINT`` (part of the features' provenance)."""
        from medvl.pathology.stain import stain_label

        return stain_label(self.stain)

    def to(self, device) -> TileEncoder:
        (self.owner if self.owner is not None else self.model).to(device)
        return self

    def preprocess(self, tiles: np.ndarray, device) -> Any:
        """uint8 ``[B, H, W, 3]`` -> the tower's input ``[B, C, h, w]`` (the one image transform)."""
        from medvl.models.transforms import image_transform

        if self.stain is not None:  # the run's stain fit, on the uint8 tiles on the device, before any resizing
            import torch

            tiles = self.stain.apply(torch.from_numpy(np.ascontiguousarray(tiles)).to(device, non_blocking=True))
        return image_transform(tiles, self.transform, device)

    def encode(self, x) -> Any:
        feats = self.model.encode(x)
        return self.project_fn(feats) if self.projected and self.project_fn is not None else feats


def encoder_label(spec: EncoderSpec) -> str:
    """The readable ``encoder`` attribute of feature files (identity is the print: :func:`encoder_print`); a stain fit
    adds ``+stain:METHOD:FINGERPRINT`` (the fit is also part of the features' provenance: :func:`spec_stain_label`)."""
    label = encoder_print(spec).encoder + (":projected" if spec.project else "")
    stain = spec_stain_label(spec)
    return label if stain == "none" else f"{label}+stain:{stain}"


def spec_stain_label(spec: EncoderSpec) -> str:
    """``none``, or ``METHOD:FINGERPRINT`` of the stain fit ``spec`` applies (known before the model loads)."""
    if spec.stain is None:
        return "none"
    from medvl.pathology.stain import StainFit, stain_label

    return stain_label(StainFit.load(spec.stain))


def _tower_options(spec: EncoderSpec) -> dict[str, Any]:
    return {k: v for k, v in (("model_name", spec.model_name), ("img_size", spec.img_size)) if v is not None}


def encoder_print(spec: EncoderSpec) -> ModelPrint:
    """Which weights ``spec`` embeds with, known before the model loads (resume checks it): a checkpoint's weights
    hash and config, a model card's weights fingerprint and card, or a tower's name, options and weights file (or
    its random initialisation, seed 0)."""
    card = card_of(spec)
    if card is not None:
        from medvl.hashing import config_hash
        from medvl.models.published import card_weights_label

        label = card_weights_label(card, spec.weights)  # the card and its weights' fingerprint, readable
        return ModelPrint(encoder=label, weights=label, config=config_hash(card.to_dict()), modality="image")
    if Path(spec.name).is_dir():
        from medvl.models.identity import checkpoint_print

        return checkpoint_print(spec.name, "image", projected=spec.project)
    from medvl.models.identity import tower_print

    return tower_print(spec.name, _tower_options(spec), "image", spec.weights, seed=TOWER_SEED)


#: the seed of a bare tower's random initialisation (a resumed run extracts with the same encoder)
TOWER_SEED = 0


class LazyTileEncoder:
    """Loads the encoder on first use, so a resumed cohort whose slides are all done never builds the model.

    Random weights are refused here, before any work, unless ``spec.random_weights``.
    """

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.model_print = encoder_print(spec)
        self.name = encoder_label(spec)
        self.stain_label = spec_stain_label(spec)
        if self.model_print.random_weights and not spec.random_weights:
            raise ConfigError(f"encoder '{self.model_print.encoder}' has no weights (a random initialisation): give "
                              f"--weights FILE or a trained checkpoint, or {RANDOM_HINT}")
        self._encoder: TileEncoder | None = None

    def get(self) -> TileEncoder:
        if self._encoder is None:
            self._encoder = load_tile_encoder(self.spec)
        return self._encoder

    @property
    def transform(self) -> Any:
        """The encoder's image transform (read from a checkpoint that records one, or a model card, without building
        the model)."""
        if self._encoder is None and card_of(self.spec) is not None:
            return _card_transform(self.spec)
        if self._encoder is None and Path(self.spec.name).is_dir():
            from medvl.models.checkpoint import read_checkpoint_config
            from medvl.models.transforms import ImageTransformConfig

            stored = read_checkpoint_config(self.spec.name).get("preprocessing", {}).get("image")
            if stored:
                return ImageTransformConfig.from_dict(stored)
        return self.get().transform


def load_tile_encoder(spec: EncoderSpec) -> TileEncoder:
    """The single place that turns an encoder spec into a :class:`TileEncoder`.

    A registered tower name builds that tower; a directory is a medvl checkpoint loaded with
    ``medvl.models.create_model`` (its image tower, optionally projected into the joint space): its transform is
    the one it was trained with, and using it on slides when it was trained on another domain warns (or, with
    ``spec.strict_domain``, fails).
    """
    encoder = _load_model(spec)
    if spec.stain is not None:
        from medvl.pathology.stain import StainFit

        encoder.stain = StainFit.load(spec.stain)
    return encoder


def _load_model(spec: EncoderSpec) -> TileEncoder:
    if Path(spec.name).is_dir():
        return _checkpoint_encoder(spec)
    if card_of(spec) is not None:
        return _card_encoder(spec)
    from medvl.models import create_tower, get_tower_entry
    from medvl.models.transforms import tower_transform

    entry = get_tower_entry(spec.name)
    if entry.modality != "image":
        raise ConfigError(f"tower '{spec.name}' encodes {entry.modality}, not image tiles")
    kwargs = {**_tower_options(spec), **({"weights": spec.weights} if spec.weights is not None else {})}
    if spec.trust_pickle:
        kwargs["trust_pickle"] = True
    import torch

    with torch.random.fork_rng(devices=[]):
        # a tower without weights starts from a fixed init: a resumed run extracts with the same encoder
        torch.manual_seed(TOWER_SEED)
        tower = create_tower(spec.name, **kwargs)
    printed = encoder_print(spec)
    if tower.random_weights and not spec.random_weights:
        raise ConfigError(f"encoder '{printed.encoder}' has no weights (a random initialisation): give --weights "
                          f"FILE or a trained checkpoint, or {RANDOM_HINT}")
    return TileEncoder(model=tower.eval(), name=encoder_label(spec), embed_dim=int(tower.embed_dim),
                       transform=tower_transform(tower), model_print=printed)


def card_of(spec: EncoderSpec) -> Any:
    """The model card ``spec.name`` names (``None`` for registered towers and checkpoint folders)."""
    if Path(spec.name).is_dir() or spec.name in _tower_names():
        return None
    from medvl.models.catalogue import find_card

    return find_card(spec.name)


def card_tiling(spec: EncoderSpec, mpp: float | None, size: int | None) -> tuple[float, int, list[str]]:
    """Tile resolution and size for ``spec``: the user's values, else the model card's, else 0.5 µm/px and 224 px.

    Returns the values and the warnings to show when the user's choice differs from the card's."""
    card = card_of(spec)
    tile = getattr(card, "tile", None)
    if tile is None:
        return (0.5 if mpp is None else mpp), (224 if size is None else size), []
    warnings = []
    if mpp is not None and abs(mpp - tile.mpp) > 1e-9:
        warnings.append(f"tiling at {mpp:g} µm/px, but model card '{card.name}' expects {tile.mpp:g} µm/px "
                        f"({tile.magnification or 10 / tile.mpp:g}x): its features may degrade")
    if size is not None and size != tile.tile_px:
        warnings.append(f"tiles of {size} px, but model card '{card.name}' expects {tile.tile_px} px at "
                        f"{tile.mpp:g} µm/px")
    return (tile.mpp if mpp is None else mpp), (tile.tile_px if size is None else size), warnings


def _tower_names() -> set[str]:
    from medvl.models import list_towers

    return set(list_towers())


def _card_transform(spec: EncoderSpec) -> Any:
    """A model card's image transform (its data config: size, resize-then-crop, mean/std), without loading it."""
    from medvl.models.transforms import ImageTransformConfig

    card = card_of(spec)
    if card.tile is None:
        raise ConfigError(f"model card '{spec.name}' is a {card.modality} encoder, not a tile encoder")
    return ImageTransformConfig.from_data_config(card.tile.data_config())


def _card_encoder(spec: EncoderSpec) -> TileEncoder:
    from medvl.models.published import load_card_encoder
    from medvl.models.transforms import ImageTransformConfig

    encoder = load_card_encoder(spec.name, spec.weights, trust_pickle=spec.trust_pickle,
                                trust_remote_code=spec.trust_remote_code)
    if encoder.data_config is None:
        raise ConfigError(f"model card '{spec.name}' is a {encoder.card.modality} encoder, not a tile encoder")
    printed = encoder_print(spec)
    return TileEncoder(model=encoder, name=encoder_label(spec), embed_dim=encoder.embed_dim,
                       transform=ImageTransformConfig.from_data_config(encoder.data_config), model_print=printed)


def _checkpoint_encoder(spec: EncoderSpec) -> TileEncoder:
    from medvl.models import create_model

    return model_tile_encoder(create_model(spec.name).eval(), spec)


def model_tile_encoder(model: Any, spec: EncoderSpec) -> TileEncoder:
    """The tile encoder of a loaded checkpoint model (``spec.name`` its folder): its image tower, its transform, and
    its projection with ``spec.project``. ``medvl slide extract --encoder DIR`` and the cohort pipeline both use it.

    Random image weights need ``spec.random_weights``; a training domain other than slides warns once (or fails
    with ``spec.strict_domain``).
    """
    from medvl.models.domain import domain_mismatch, input_domain
    from medvl.models.factory import require_weights

    if "image" not in model.towers:
        raise ConfigError(f"{spec.name}: this model has no image tower (towers: {', '.join(model.modalities)})")
    require_weights(model, spec.random_weights, f"checkpoint {spec.name}", ["image"])
    printed = encoder_print(spec)
    message = domain_mismatch(model.domain("image"), input_domain("slide"), printed.encoder, spec.strict_domain)
    if message:
        warn(message)
    tower = model.towers["image"]
    project_fn = (lambda f: model.project("image", f)) if spec.project else None
    dim = int(tower.embed_dim) if not spec.project else int(model.embed_dim)
    return TileEncoder(model=tower, name=encoder_label(spec), embed_dim=dim, transform=model.image_transform(),
                       model_print=printed, projected=spec.project, project_fn=project_fn, owner=model)


def extract_features(
    slide: Slide | str | Path,
    grid: TileGrid,
    encoder: TileEncoder,
    config: ExtractConfig | None = None,
) -> np.ndarray:
    """Embed every tile of ``grid``; returns float32 ``[N, D]`` in grid order."""
    import contextlib

    import torch

    config = config or ExtractConfig()
    device = resolve_device(config.device)
    encoder.to(device)
    cuda = device.type == "cuda"
    if cuda and config.channels_last:
        encoder.model.to(memory_format=torch.channels_last)
    out = np.empty((len(grid), encoder.embed_dim), dtype=np.float32)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and config.amp else contextlib.nullcontext()
    batches = iter_tile_batches(slide, grid, batch_size=config.batch_size, workers=config.workers)
    n_batches = -(-len(grid) // config.batch_size)
    with torch.inference_mode(), autocast:
        for start, tiles in progress(batches, total=n_batches, desc="extract", unit="batch"):
            x = encoder.preprocess(tiles, device)
            if cuda and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            feats = encoder.encode(x)
            out[start:start + len(tiles)] = feats.float().cpu().numpy()
    return out
