"""The multi-modal model: any number of towers projected into one joint space.

Each modality has a tower (from the registry) and a projection to ``embed_dim``; ``encode_<modality>`` returns
L2-normalised joint-space embeddings. A learnable temperature (``logit_scale``, stored as a log, clamped so the scale
never exceeds ``max_logit_scale``) and an optional bias (SigLIP) are shared by the contrastive losses.

Binding a new modality to an aligned pair (ULIP style): add its tower to the config and train with every other
parameter frozen (``freeze_except``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.models.checkpoint import save_checkpoint
from medvl.models.domain import DataDomain
from medvl.models.registry import create_tower
from medvl.models.transforms import ImageTransformConfig, tower_transform

__all__ = ["ModelConfig", "MultiModalModel", "TowerSpec"]


@dataclass
class TowerSpec(Config):
    """One modality's tower: registered ``name``, its ``options``, and the projection into the joint space."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    projection: Literal["linear", "mlp", "none"] = "linear"
    grad_checkpointing: bool = False


@dataclass
class ModelConfig(Config):
    """A multi-modal model: ``towers`` maps a modality ("image", "text", "volume", "bag", "tabular") to its tower."""

    towers: dict[str, TowerSpec]
    embed_dim: int = 512
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    init_logit_bias: float | None = None

    def validate(self) -> None:
        if not self.towers:
            raise ConfigError("ModelConfig.towers: at least one tower is needed")
        if self.embed_dim <= 0:
            raise ConfigError("ModelConfig.embed_dim: must be positive")


def _projection(kind: str, width: int, embed_dim: int) -> nn.Module:
    if kind == "none":
        if width != embed_dim:
            raise ConfigError(f"projection 'none' needs the tower width ({width}) to equal embed_dim ({embed_dim})")
        return nn.Identity()
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim, bias=False))
    return nn.Linear(width, embed_dim, bias=False)


def _plug_checkpoint_towers(config: ModelConfig) -> tuple[ModelConfig, dict[str, tuple[dict[str, Any], bool]]]:
    """Towers named ``checkpoint`` (options ``path``) become the tower of that checkpoint folder: its spec replaces
    them in the config (so a saved model never points back at the folder) and its weights are returned per
    modality with their random-initialisation flag."""
    from dataclasses import replace

    from medvl.models.checkpoint import FROM_CHECKPOINT, checkpoint_tower

    plugged: dict[str, tuple[dict[str, Any], bool]] = {}
    towers = dict(config.towers)
    for modality, spec in config.towers.items():
        if spec.name != FROM_CHECKPOINT:
            continue
        source, state, random = checkpoint_tower(modality, spec.options)
        towers[modality] = replace(spec, name=source["name"], options=source["options"])
        plugged[modality] = (state, random)
    return (replace(config, towers=towers) if plugged else config), plugged


class MultiModalModel(nn.Module):
    """Towers + projections + temperature; see the module docstring."""

    def __init__(self, config: ModelConfig, towers: dict[str, nn.Module] | None = None):
        super().__init__()
        plugged: dict[str, tuple[dict[str, Any], bool]] = {}
        if towers is None:
            config, plugged = _plug_checkpoint_towers(config)
        self.config = config
        built = towers or {m: create_tower(s.name, **s.options) for m, s in config.towers.items()}
        for m, (state, random) in plugged.items():
            built[m].load_state_dict(state, strict=True)
            built[m].random_weights = random
        self.towers = nn.ModuleDict(built)
        self.projections = nn.ModuleDict(
            {m: _projection(config.towers[m].projection, t.embed_dim, config.embed_dim) for m, t in built.items()}
        )
        for m, spec in config.towers.items():
            if spec.grad_checkpointing:
                self.towers[m].set_grad_checkpointing(True)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        bias = config.init_logit_bias
        self.logit_bias = nn.Parameter(torch.tensor(float(bias))) if bias is not None else None
        #: per modality: the tower's parameters are a random initialisation (no weights file, never trained)
        self.random_weights: dict[str, bool] = {m: bool(getattr(t, "random_weights", True)) for m, t in built.items()}
        #: per modality: the preprocessing config of the training data (a mapping), once the model was trained
        self.preprocessing: dict[str, dict[str, Any]] = {}
        #: per modality: the domain of the training data (a :class:`DataDomain` mapping)
        self.domains: dict[str, dict[str, Any]] = {}
        #: where the weights come from (set by ``create_model``): ``source``, ``weights`` hash, ``config`` hash
        self.identity: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ properties
    @property
    def modalities(self) -> list[str]:
        return list(self.towers.keys())

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def tokenizer(self) -> Any:
        return getattr(self.towers["text"], "tokenizer", None) if "text" in self.towers else None

    def image_transform(self) -> ImageTransformConfig:
        """The transform the image tower takes (the training data's, for a trained checkpoint)."""
        return tower_transform(self._tower("image"))

    def domain(self, modality: str) -> DataDomain | None:
        """The domain of the data the ``modality`` tower was trained on (``None`` when not recorded)."""
        data = self.domains.get(modality)
        return DataDomain.from_dict(data) if data else None

    def record_training(self, modality: str, preprocessing: Config | None = None, domain: DataDomain | None = None,
                        trained: bool = False) -> None:
        """Remember what the ``modality`` tower is trained on (saved in the checkpoint): its preprocessing (an image
        tower then carries it as its transform), the data domain, and that its weights are no longer random."""
        self._tower(modality)
        if preprocessing is not None:
            self.preprocessing[modality] = preprocessing.to_dict()
            if isinstance(preprocessing, ImageTransformConfig):
                self.towers[modality].transform_config = preprocessing
        if domain is not None:
            self.domains[modality] = domain.to_dict()
        if trained:
            self.random_weights[modality] = False

    def scale(self) -> torch.Tensor:
        """The temperature's inverse, clamped at ``max_logit_scale``."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def _tower(self, modality: str) -> nn.Module:
        if modality not in self.towers:
            raise ConfigError(f"this model has no '{modality}' tower (it has: {', '.join(self.modalities)})")
        return self.towers[modality]

    # ------------------------------------------------------------------------------------------ encoding
    def project(self, modality: str, features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Joint-space embedding of features a tower already produced (e.g. tile features from an h5 file)."""
        self._tower(modality)
        proj = self.projections[modality]
        weight = next(proj.parameters(), None)
        if weight is not None and features.dtype != weight.dtype and not torch.is_autocast_enabled():
            features = features.to(weight.dtype)
        out = proj(features)
        return F.normalize(out, dim=-1) if normalize else out

    def encode(self, modality: str, batch: Any, normalize: bool = True) -> torch.Tensor:
        """Tower, projection and (by default) L2 normalisation."""
        return self.project(modality, self._tower(modality).encode(batch), normalize)

    def encode_tokens(self, modality: str, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised token embeddings ``[B, T, D]`` in the joint space and their mask (FILIP)."""
        tower = self._tower(modality)
        if hasattr(tower, "encode_tokens_masked"):
            tokens, mask = tower.encode_tokens_masked(batch)
        else:
            tokens, mask = tower.encode_tokens(batch), None
        return F.normalize(self.projections[modality](tokens), dim=-1), mask

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        return self.encode("text", texts, normalize)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode("image", images, normalize)

    def encode_volume(self, volumes: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode("volume", volumes, normalize)

    def encode_bag(self, bags: Any, normalize: bool = True) -> torch.Tensor:
        return self.encode("bag", bags, normalize)

    def encode_tabular(self, rows: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode("tabular", rows, normalize)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embeddings of every modality present in ``batch`` (keys are modality names)."""
        return {m: self.encode(m, x) for m, x in batch.items() if m in self.towers}

    # ------------------------------------------------------------------------------------------ training helpers
    def freeze_except(self, *prefixes: str) -> list[str]:
        """Freeze every parameter whose name does not start with one of ``prefixes``; return the trainable names."""
        trainable = []
        for name, p in self.named_parameters():
            p.requires_grad_(any(name.startswith(pre) for pre in prefixes))
            if p.requires_grad:
                trainable.append(name)
        return trainable

    def save(self, folder: Any) -> Any:
        """Write a checkpoint folder (see :mod:`medvl.models.checkpoint`)."""
        return save_checkpoint(self, folder)
