"""Tile feature extraction with any registered image tower (or a medvl checkpoint's image tower).

Tiles are read in parallel by :func:`~medvl.pathology.loader.iter_tile_batches` while the model runs. Preprocessing
follows the tower's ``data_config`` (resize to its input size with its interpolation, then its mean/std), done on
the device as one batched operation. On CUDA the forward runs in bf16 autocast with channels_last memory format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.io.slide import Slide
from medvl.log import get_logger, progress
from medvl.pathology.loader import iter_tile_batches
from medvl.pathology.tiling import TileGrid

log = get_logger(__name__)

__all__ = [
    "EncoderSpec", "ExtractConfig", "LazyTileEncoder", "TileEncoder", "card_of", "card_tiling", "encoder_label",
    "extract_features", "load_tile_encoder", "resolve_device",
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
    """A model ready to embed uint8 tiles: preprocessing and forward in one place.

    Attributes:
        model: the tower (``encode(batch) -> [B, D]``).
        name: what is recorded as the ``encoder`` attribute.
        embed_dim: width of the stored features.
        data_config: ``input_size``, ``mean``, ``std``, ``interpolation``.
        projected: whether outputs are joint-space embeddings.
        project_fn: maps raw tower features to the joint space (checkpoints only).
        owner: the module that holds ``model`` and the projection (moved to the device with it).
        stain: the stain normalisation applied to the uint8 tiles first (``None``: none).
    """

    model: Any
    name: str
    embed_dim: int
    data_config: dict[str, Any]
    projected: bool = False
    project_fn: Any = None
    owner: Any = None
    stain: Any = None

    def get(self) -> TileEncoder:
        return self

    def to(self, device) -> TileEncoder:
        (self.owner if self.owner is not None else self.model).to(device)
        return self

    def preprocess(self, tiles: np.ndarray, device) -> Any:
        """uint8 ``[B, H, W, 3]`` -> normalised float ``[B, 3, h, w]`` at the model's input size."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(tiles).to(device, non_blocking=True)
        if self.stain is not None:  # the run's stain fit, on the device, before any resizing
            x = self.stain.apply(x)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        _, h, w = self.data_config["input_size"]
        resize = self.data_config.get("resize_px")  # a card's resize-then-centre-crop (e.g. 256 -> 224)
        size = (resize, resize) if resize else (h, w)
        if x.shape[-2:] != size:
            mode = "bicubic" if self.data_config.get("interpolation") == "bicubic" else "bilinear"
            x = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).clamp_(0, 1)
        if size != (h, w):
            top, left = (size[0] - h) // 2, (size[1] - w) // 2
            x = x[..., top:top + h, left:left + w]
        mean = torch.tensor(self.data_config["mean"], device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.data_config["std"], device=device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode(self, x) -> Any:
        feats = self.model.encode(x)
        return self.project_fn(feats) if self.projected and self.project_fn is not None else feats


def encoder_label(spec: EncoderSpec) -> str:
    """The ``encoder`` attribute recorded in feature files (known before the model loads: resume checks it); a stain
    fit adds ``+stain:METHOD:FINGERPRINT``, so features made with another fit (or none) are recomputed."""
    label = _model_label(spec)
    if spec.stain is None:
        return label
    from medvl.pathology.stain import StainFit, stain_label

    return f"{label}+stain:{stain_label(StainFit.load(spec.stain))}"


def _model_label(spec: EncoderSpec) -> str:
    card = card_of(spec)
    if card is not None:
        from medvl.models.published import card_weights_label

        return card_weights_label(card, spec.weights)
    if Path(spec.name).is_dir():
        label = str(Path(spec.name).resolve()) + (":projected" if spec.project else "")
    else:
        label = spec.name if spec.model_name is None else f"{spec.name}:{spec.model_name}"
    return label if spec.weights is None else f"{label}@{Path(spec.weights).name}"


class LazyTileEncoder:
    """Loads the encoder on first use, so a resumed cohort whose slides are all done never builds the model."""

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.name = encoder_label(spec)
        self._encoder: TileEncoder | None = None

    def get(self) -> TileEncoder:
        if self._encoder is None:
            self._encoder = load_tile_encoder(self.spec)
        return self._encoder


def load_tile_encoder(spec: EncoderSpec) -> TileEncoder:
    """The single place that turns an encoder spec into a :class:`TileEncoder`.

    A registered tower name builds that tower; a directory is a medvl checkpoint loaded with
    ``medvl.models.create_model`` (its image tower, optionally projected into the joint space).
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

    entry = get_tower_entry(spec.name)
    if entry.modality != "image":
        raise ConfigError(f"tower '{spec.name}' encodes {entry.modality}, not image tiles")
    kwargs = {k: v for k, v in (("model_name", spec.model_name), ("weights", spec.weights),
                                ("img_size", spec.img_size)) if v is not None}
    if spec.trust_pickle:
        kwargs["trust_pickle"] = True
    import torch

    with torch.random.fork_rng(devices=[]):
        # a tower without weights starts from a fixed init: a resumed run extracts with the same encoder
        torch.manual_seed(0)
        tower = create_tower(spec.name, **kwargs)
    data_config = getattr(tower, "data_config", None) or _default_data_config()
    return TileEncoder(model=tower.eval(), name=encoder_label(spec), embed_dim=int(tower.embed_dim),
                       data_config=data_config)


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


def _card_encoder(spec: EncoderSpec) -> TileEncoder:
    from medvl.models.published import load_card_encoder

    encoder = load_card_encoder(spec.name, spec.weights, trust_pickle=spec.trust_pickle,
                                trust_remote_code=spec.trust_remote_code)
    if encoder.data_config is None:
        raise ConfigError(f"model card '{spec.name}' is a {encoder.card.modality} encoder, not a tile encoder")
    return TileEncoder(model=encoder, name=encoder_label(spec), embed_dim=encoder.embed_dim,
                       data_config=encoder.data_config)


def _default_data_config() -> dict[str, Any]:
    return {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "interpolation": "bicubic"}


def _checkpoint_encoder(spec: EncoderSpec) -> TileEncoder:
    from medvl.models import create_model

    model = create_model(spec.name).eval()
    tower = model.towers["image"]
    data_config = getattr(tower, "data_config", None) or _default_data_config()
    project_fn = (lambda f: model.project("image", f)) if spec.project else None
    dim = int(tower.embed_dim)
    if spec.project:
        import torch

        c, h, w = data_config["input_size"]
        with torch.inference_mode():
            dim = int(model.project("image", tower.encode(torch.zeros(1, c, h, w))).shape[-1])
    return TileEncoder(model=tower, name=encoder_label(spec), embed_dim=dim, data_config=data_config,
                       projected=spec.project, project_fn=project_fn, owner=model)


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
