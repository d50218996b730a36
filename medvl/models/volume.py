"""Volume towers: 3-D CNN (MONAI ResNet), 3-D ViT (MONAI ViT) and a 2.5-D tower (a timm 2-D encoder over slices).

Every tower takes ``Tensor[B, 1, D, H, W]`` in [0, 1] (the output of :mod:`medvl.radiology.transforms`) or a dict with
an ``"image"`` entry, and returns ``Tensor[B, embed_dim]`` from ``encode``; ``encode_tokens`` gives the spatial tokens
(ResNet feature-map cells, ViT patches, or one token per slice). Each name has a ``-tiny`` variant for tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from medvl.config import Config, dataclass
from medvl.errors import ConfigError, InputError
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = [
    "ResNet3DConfig",
    "ResNet3DTower",
    "SliceTowerConfig",
    "SliceTower",
    "ViT3DConfig",
    "ViT3DTower",
    "VolumeTower",
]

#: MONAI ResNet depth -> (block, layers)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


class VolumeTower(Tower):
    """Base of the volume towers: input checking and optional weight loading."""

    modality: ClassVar[str] = "volume"
    #: (D, H, W) of the example batch in the registry test
    example_shape: tuple[int, int, int] = (16, 32, 32)
    #: (D, H, W) the tower requires, or None when any size works
    input_shape: tuple[int, int, int] | None = None

    @staticmethod
    def _volumes(batch: Any) -> torch.Tensor:
        x = batch["image"] if isinstance(batch, dict) else batch
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"volume towers take Tensor[B, 1, D, H, W], got {shape}")
        return x

    def _load_weights(self, module: nn.Module, weights: Path | None, trust_pickle: bool = False) -> None:
        if weights is not None:
            from medvl.models.weights import load_state_file

            state = load_state_file(weights, trust_pickle=trust_pickle)
            state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP-wrapped model
            missing, unexpected = module.load_state_dict(state, strict=False)
            if unexpected or missing:
                raise InputError(weights, f"weights do not fit this tower (missing {len(missing)} keys, e.g. "
                                          f"{missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})")
            self.random_weights = False


# ------------------------------------------------------------------------------------------------------ ResNet
@dataclass
class ResNet3DConfig(Config):
    """MONAI 3-D ResNet. ``depth`` 10/18/34/50; ``widths`` the channels of the four stages."""

    depth: int = 18
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    conv1_stride: int = 2
    weights: Path | None = None
    trust_pickle: bool = False

    def validate(self) -> None:
        if self.depth not in RESNET_DEPTHS:
            raise ConfigError(f"ResNet3DConfig.depth: one of {sorted(RESNET_DEPTHS)}, got {self.depth}")


class ResNet3DTower(VolumeTower):
    """Global-average-pooled features of a MONAI 3-D ResNet (MedicalNet / RenalCLIP-style image encoder)."""

    def __init__(self, config: ResNet3DConfig):
        super().__init__()
        from monai.networks.nets import ResNet

        block, layers = RESNET_DEPTHS[config.depth]
        self.config = config
        self.net = ResNet(block=block, layers=list(layers), block_inplanes=list(config.widths), spatial_dims=3,
                          n_input_channels=1, conv1_t_stride=config.conv1_stride, feed_forward=False)
        self.embed_dim = config.widths[-1] * (4 if block == "bottleneck" else 1)
        self._load_weights(self.net, config.weights, config.trust_pickle)

    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def encode(self, batch: Any) -> torch.Tensor:
        return self._feature_map(self._volumes(batch)).mean(dim=(2, 3, 4))

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        return self._feature_map(self._volumes(batch)).flatten(2).transpose(1, 2)


# ------------------------------------------------------------------------------------------------------ ViT
@dataclass
class ViT3DConfig(Config):
    """MONAI 3-D ViT on a fixed input size ``img_size`` (D, H, W) cut into ``patch_size`` patches."""

    img_size: tuple[int, int, int] = (32, 128, 128)
    patch_size: tuple[int, int, int] = (8, 16, 16)
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    weights: Path | None = None
    trust_pickle: bool = False

    def validate(self) -> None:
        if any(s % p for s, p in zip(self.img_size, self.patch_size, strict=True)):
            raise ConfigError(f"ViT3DConfig: img_size {self.img_size} must be divisible by patch_size "
                              f"{self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ConfigError("ViT3DConfig: hidden_size must be divisible by num_heads")


class ViT3DTower(VolumeTower):
    """Mean-pooled patch tokens of a MONAI 3-D ViT (M3D / CT-CLIP-style volume transformer)."""

    def __init__(self, config: ViT3DConfig):
        super().__init__()
        from monai.networks.nets import ViT

        self.config = config
        self.net = ViT(in_channels=1, img_size=config.img_size, patch_size=config.patch_size,
                       hidden_size=config.hidden_size, mlp_dim=config.mlp_dim, num_layers=config.num_layers,
                       num_heads=config.num_heads, classification=False, spatial_dims=3)
        self.embed_dim = config.hidden_size
        self.example_shape = tuple(config.img_size)
        self.input_shape = tuple(config.img_size)
        self._load_weights(self.net, config.weights, config.trust_pickle)

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        x = self._volumes(batch)
        if tuple(x.shape[2:]) != tuple(self.config.img_size):
            raise ValueError(f"this ViT takes volumes of {self.config.img_size} (D, H, W), got {tuple(x.shape[2:])};"
                             " set the preprocessing spatial_size to match")
        tokens, _ = self.net(x)
        return tokens

    def encode(self, batch: Any) -> torch.Tensor:
        return self.encode_tokens(batch).mean(dim=1)


# ------------------------------------------------------------------------------------------------------ 2.5-D
@dataclass
class SliceTowerConfig(Config):
    """A timm 2-D encoder applied to every ``slice_stride``-th axial slice, pooled over slices.

    Grey slices are repeated to 3 channels and normalised with the encoder's mean/std, so ImageNet-style weights
    (a local ``weights`` file) apply unchanged.
    """

    model_name: str = "resnet18"
    img_size: int | None = None
    pooling: Literal["mean", "max"] = "mean"
    slice_stride: int = 1
    slice_batch: int = 64
    weights: Path | None = None
    trust_pickle: bool = False

    def validate(self) -> None:
        if self.slice_stride < 1 or self.slice_batch < 1:
            raise ConfigError("SliceTowerConfig: slice_stride and slice_batch must be >= 1")


class SliceTower(VolumeTower):
    """2.5-D tower: per-slice features of a timm model, pooled over the depth axis."""

    def __init__(self, config: SliceTowerConfig):
        super().__init__()
        import timm

        self.config = config
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
        if config.img_size is not None:
            kwargs["img_size"] = config.img_size
        try:
            self.net = timm.create_model(config.model_name, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(f"SliceTowerConfig.model_name: {exc}") from None
        self._load_weights(self.net, config.weights, config.trust_pickle)
        data = timm.data.resolve_data_config({}, model=self.net)
        self.input_size = tuple(data["input_size"][1:])
        self.register_buffer("mean", torch.tensor(data["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data["std"]).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = int(self.net.num_features)

    def _resize_needed(self) -> bool:
        """Slices are resized when the encoder declares a fixed input size (ViTs) or one was configured."""
        fixed = bool(getattr(self.net, "pretrained_cfg", {}).get("fixed_input_size", False))
        return self.config.img_size is not None or fixed

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        x = self._volumes(batch)[:, :, :: self.config.slice_stride]
        b, _, d, h, w = x.shape
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, 1, h, w)
        if self._resize_needed() and (h, w) != self.input_size:
            slices = nn.functional.interpolate(slices, size=self.input_size, mode="bilinear", align_corners=False)
        slices = (slices.expand(-1, 3, -1, -1) - self.mean) / self.std
        feats = [self.net(chunk) for chunk in slices.split(self.config.slice_batch)]
        return torch.cat(feats).view(b, d, -1)

    def encode(self, batch: Any) -> torch.Tensor:
        tokens = self.encode_tokens(batch)
        return tokens.amax(dim=1) if self.config.pooling == "max" else tokens.mean(dim=1)


# ------------------------------------------------------------------------------------------------------ registry
def _example(tower: VolumeTower) -> torch.Tensor:
    return torch.rand(2, 1, *tower.example_shape, generator=torch.Generator().manual_seed(0))


@register_tower("resnet3d", "volume", description="MONAI 3-D ResNet (depth 10/18/34/50), global average pooled")
def resnet3d(**kwargs: Any) -> ResNet3DTower:
    return ResNet3DTower(ResNet3DConfig.from_dict(kwargs))


@register_tower("resnet3d-tiny", "volume", tiny=True, example_input=_example,
                description="ResNet-10 3-D with 8..64 channels (tests)")
def resnet3d_tiny(**kwargs: Any) -> ResNet3DTower:
    return ResNet3DTower(ResNet3DConfig.from_dict({"depth": 10, "widths": (8, 16, 32, 64), **kwargs}))


@register_tower("vit3d", "volume", description="MONAI 3-D ViT-B on 32x128x128 volumes, 8x16x16 patches")
def vit3d(**kwargs: Any) -> ViT3DTower:
    return ViT3DTower(ViT3DConfig.from_dict(kwargs))


@register_tower("vit3d-tiny", "volume", tiny=True, example_input=_example,
                description="2-layer 3-D ViT, width 32, on 16x32x32 volumes (tests)")
def vit3d_tiny(**kwargs: Any) -> ViT3DTower:
    defaults = {"img_size": (16, 32, 32), "patch_size": (8, 16, 16), "hidden_size": 32, "mlp_dim": 64,
                "num_layers": 2, "num_heads": 2}
    return ViT3DTower(ViT3DConfig.from_dict({**defaults, **kwargs}))


@register_tower("slices2.5d", "volume", description="timm 2-D encoder over axial slices, pooled (2.5-D)")
def slices25d(**kwargs: Any) -> SliceTower:
    return SliceTower(SliceTowerConfig.from_dict(kwargs))


@register_tower("slices2.5d-tiny", "volume", tiny=True, example_input=_example,
                description="timm test_resnet over slices, mean pooled (tests)")
def slices25d_tiny(**kwargs: Any) -> SliceTower:
    return SliceTower(SliceTowerConfig.from_dict({"model_name": "test_resnet", **kwargs}))
