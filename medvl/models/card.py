"""The schema of a model card: a published encoder described as data.

A card is a small JSON or YAML file (``medvl/models/cards/*.json``; users add their own folders, see
:mod:`medvl.models.catalogue`). It names the architecture (a builder and its keyword arguments), the input the weights
expect, which output is the embedding, the weight files and their key layout, the licence, the citation and the
sources every fact came from. Parts of a model that medvl cannot run are listed in ``not_available``.

Example (abridged)::

    {"name": "uni", "modality": "tile",
     "builder": {"name": "timm", "kwargs": {"model_name": "vit_large_patch16_224", "init_values": 1e-05}},
     "tile": {"tile_px": 256, "mpp": 0.5, "input_px": 224, "mean": [0.485, 0.456, 0.406], ...},
     "embedding": {"dim": 1024, "output": "cls"},
     "weights": {"files": ["pytorch_model.bin"]}, ...}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from medvl.config import Config, field
from medvl.errors import ConfigError

__all__ = [
    "BuilderSpec", "EmbeddingSpec", "LicenceSpec", "ModelCard", "ParamsSpec", "ReducedSpec", "RemoteCodeSpec",
    "SlideInput", "TileInput", "VolumeInput", "WeightsSpec", "ZeroShotSpec",
]

Modality = Literal["tile", "slide", "ct"]
#: ``pooled``: the builder's own pooled output; ``cls``: the class token; ``patch_mean``: the mean of the patch
#: tokens (prefix tokens such as registers excluded); ``cls+patch_mean``: both concatenated
Output = Literal["pooled", "cls", "patch_mean", "cls+patch_mean"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: builders whose architecture medvl does not build itself (weights cannot be checked key by key)
OPAQUE_BUILDERS = frozenset({"unavailable", "hf-remote"})


@dataclass
class BuilderSpec(Config):
    """The architecture: a builder of the registry (``timm``, ``open_clip``, ``hf``, ``monai``, ``medvl``) and its
    keyword arguments, exactly as the source builds the model."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TileInput(Config):
    """What a tile encoder expects.

    Attributes:
        tile_px: tile side cut from the slide, in pixels at ``mpp``.
        mpp: µm per pixel of the tiles (0.5 ~ 20x).
        magnification: the objective magnification the sources name (informative; ``mpp`` drives tiling).
        input_px: the model's input side after resizing (and cropping).
        resize_px: resize the tile to this side first, then centre-crop to ``input_px`` (``None``: resize straight
            to ``input_px``).
        mean: per-channel mean of the normalisation (RGB, 0..1 scale).
        std: per-channel standard deviation.
        interpolation: resampling of the resize.
    """

    tile_px: int
    mpp: float
    input_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    magnification: float | None = None
    resize_px: int | None = None

    def validate(self) -> None:
        if self.tile_px < 8 or self.input_px < 8 or self.mpp <= 0:
            raise ConfigError("TileInput: tile_px and input_px must be >= 8 and mpp > 0")
        if self.resize_px is not None and self.resize_px < self.input_px:
            raise ConfigError("TileInput: resize_px must be >= input_px (it is centre-cropped to input_px)")
        if any(s <= 0 for s in self.std):
            raise ConfigError("TileInput: std values must be > 0")

    def data_config(self) -> dict[str, Any]:
        """The preprocessing in the form :class:`medvl.pathology.extract.TileEncoder` applies."""
        cfg: dict[str, Any] = {"input_size": (3, self.input_px, self.input_px), "mean": tuple(self.mean),
                               "std": tuple(self.std), "interpolation": self.interpolation}
        if self.resize_px is not None and self.resize_px != self.input_px:
            cfg["resize_px"] = self.resize_px
        return cfg


@dataclass
class SlideInput(Config):
    """What a slide encoder expects: tile features of a given tile encoder, tiled a given way.

    Attributes:
        tile_encoder: the card of the tile encoder whose features it reads.
        feature_dim: width of those features.
        tile_px: tile side at ``mpp``.
        mpp: µm per pixel of the tiling.
        magnification: objective magnification of the tiling.
        coords: the coordinate convention the encoder needs (``level0``: top-left corners in level-0 pixels, with
            ``patch_size_level0``; ``none``: no coordinates).
        mpp_tolerance: relative difference between the features' tiling µm/px and ``mpp`` that is still accepted.
        extra_inputs: other inputs the forward takes (e.g. an anatomical-site index).
    """

    tile_encoder: str
    feature_dim: int
    tile_px: int
    mpp: float
    magnification: float | None = None
    coords: Literal["level0", "none"] = "level0"
    extra_inputs: list[str] = field(default_factory=list)
    mpp_tolerance: float = 0.1


@dataclass
class VolumeInput(Config):
    """What a CT encoder expects (the preprocessing of ``medvl.radiology`` fills it).

    Attributes:
        spacing_mm: voxel spacing to resample to (x, y, z).
        size: the crop or pad to (x, y, z) voxels after resampling.
        hu_window: HU range clipped before scaling.
        scale_to: the range the window maps to.
        orientation: axis codes of the reoriented volume.
        tensor_layout: the axis order of the model's input tensor.
        pad_value: the value outside the volume, after scaling.
    """

    spacing_mm: tuple[float, float, float]
    size: tuple[int, int, int]
    hu_window: tuple[float, float]
    scale_to: tuple[float, float] = (0.0, 1.0)
    orientation: str = "RAS"
    tensor_layout: str = "C,D,H,W"
    pad_value: float = 0.0


@dataclass
class EmbeddingSpec(Config):
    """Which output is the embedding.

    Attributes:
        dim: its width.
        output: ``pooled``, ``cls``, ``patch_mean`` or ``cls+patch_mean``.
        normalize: L2-normalise the output (the source does).
    """

    dim: int
    output: Output = "pooled"
    normalize: bool = False


@dataclass
class ZeroShotSpec(Config):
    """Whether the embedding is ready for zero-shot text scoring.

    Attributes:
        joint_space: the embedding already lies in the image-text space.
        projection: the weight (key) that maps the embedding into that space, when it is not already there.
        text_tower: what the text side is, and whether medvl has it.
        text_builder: how medvl builds that text tower from the same weights folder (an entry of
            :data:`medvl.models.card_models.TEXT_BUILDERS`); ``None``: the card cannot serve as a zero-shot model.
            With a builder and ``joint_space`` false, ``projection`` names the encoder's parameter (a ``[dim, out]``
            matrix) that maps the embedding into the joint space; features keep the unprojected embedding.
        text_options: what the builder needs beyond the weights (file names, attention heads, ...).
    """

    joint_space: bool = False
    projection: str | None = None
    text_tower: str | None = None
    text_builder: str | None = None
    text_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightsSpec(Config):
    """The published weight files and how their keys map onto the built architecture.

    Keys are mapped in this order: ``unwrap`` (descend into nested dicts), ``strip_prefixes`` (wrappers such as
    ``module.``), ``select_prefix`` (keep only keys under it, prefix removed), ``renames`` (regex, replacement; in
    order), then ``ignore`` drops keys the embedding does not use. ``optional`` names model keys that may be absent
    from the file.

    Attributes:
        files: accepted file names, in order of preference (the first present is used).
        layout: the other files of the published folder that travel with the weights in a bundle (names or glob
            patterns: ``config.json``, ``*.py``, tokenizer files, ...).
    """

    files: list[str]
    unwrap: list[str] = field(default_factory=list)
    select_prefix: str = ""
    strip_prefixes: list[str] = field(default_factory=list)
    renames: list[tuple[str, str]] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)
    hub_id: str | None = None

    def validate(self) -> None:
        if not self.files:
            raise ConfigError("WeightsSpec: files must name at least one weight file")
        for pattern in [p for p, _ in self.renames] + self.ignore + self.optional:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"WeightsSpec: bad regular expression {pattern!r} ({exc})") from None


@dataclass
class ParamsSpec(Config):
    """Parameter counts: ``counted`` is what the card's architecture has (checked by the tests, on the meta device;
    ``None`` where medvl cannot build it); ``published`` is the count the authors give, with its source."""

    counted: int | None = None
    published: float | None = None
    published_source: str | None = None


@dataclass
class LicenceSpec(Config):
    """Licences of the weights and of the code, with where they are stated."""

    weights: str
    code: str | None = None
    gated: bool = False
    url: str | None = None
    conflict: str | None = None


@dataclass
class RemoteCodeSpec(Config):
    """A model published with its own Python code (hub ``trust_remote_code``).

    Attributes:
        hub_id: the hub repository holding the code.
        own_implementation: medvl builds the architecture itself without that code (the card's builder).
        encode: the hub model's method that embeds (slide encoders run through it with ``--trust-remote-code``).
        inputs: what that method takes, in order (``features``, ``coords``, ``patch_size_level0``).
        output_key: the key of the method's returned dict that holds the embedding (``None``: it returns a tensor).
    """

    hub_id: str
    own_implementation: bool = False
    encode: str | None = None
    inputs: list[str] = field(default_factory=lambda: ["features"])
    output_key: str | None = None


@dataclass
class ReducedSpec(Config):
    """A reduced variant for tests: builder kwargs that shrink the model while keeping its key layout."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    input_px: int | None = None
    dim: int | None = None


@dataclass
class ModelCard(Config):
    """One published encoder."""

    name: str
    modality: Modality
    title: str
    builder: BuilderSpec
    embedding: EmbeddingSpec
    weights: WeightsSpec
    params: ParamsSpec
    licence: LicenceSpec
    citation: str
    sources: list[str]
    tile: TileInput | None = None
    slide: SlideInput | None = None
    volume: VolumeInput | None = None
    zero_shot: ZeroShotSpec = field(default_factory=ZeroShotSpec)
    remote_code: RemoteCodeSpec | None = None
    not_available: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reduced: ReducedSpec = field(default_factory=ReducedSpec)

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"ModelCard: name {self.name!r} must be lower-case letters, digits, '.', '_' or '-'")
        needed = {"tile": self.tile, "slide": self.slide, "ct": self.volume}[self.modality]
        if needed is None:
            key = {"tile": "tile", "slide": "slide", "ct": "volume"}[self.modality]
            raise ConfigError(f"ModelCard '{self.name}': a {self.modality} card needs a '{key}' section")
        if not self.sources:
            raise ConfigError(f"ModelCard '{self.name}': 'sources' must cite where the facts come from")

    @property
    def checkable(self) -> bool:
        """medvl builds this card's architecture, so its weights can be checked key by key."""
        return self.builder.name not in OPAQUE_BUILDERS

    @property
    def mpp(self) -> float | None:
        """µm per pixel the model's tiles are cut at (tile and slide cards)."""
        section = self.tile or self.slide
        return None if section is None else section.mpp

    def summary(self) -> dict[str, Any]:
        """One row of ``medvl models list``."""
        if self.tile is not None:
            inp = f"{self.tile.tile_px}px@{self.tile.mpp}mpp->{self.tile.input_px}"
        elif self.slide is not None:
            inp = f"{self.slide.tile_encoder} {self.slide.feature_dim}-d, {self.slide.tile_px}px@{self.slide.mpp}mpp"
        else:
            v = self.volume
            inp = f"{'x'.join(map(str, v.size))} vox @ {'x'.join(f'{s:g}' for s in v.spacing_mm)} mm"
        return {"name": self.name, "title": self.title, "modality": self.modality, "dim": self.embedding.dim,
                "input": inp, "licence": self.licence.weights, "builder": self.builder.name,
                "params": self.params.counted, "trust_remote_code": self.remote_code is not None,
                "not_available": list(self.not_available)}
