"""The one image transform: stored pixels (uint8) -> an image tower's input, built from a typed config.

A tower's :class:`ImageTransformConfig` says what its weights expect: side, interpolation, mean/std, an optional
resize-then-centre-crop, and the colour space (RGB, or grayscale replicated to the tower's channels). It comes from
the tower's data config (timm's ``resolve_data_config``, a CLIP image size) or, for a trained medvl checkpoint, from
the training data itself (saved in the checkpoint). Slide feature extraction, the apps, image files and the
training datasets all call :func:`image_transform` with it, so the same pixels give the same tensor everywhere (as
open_clip's ``create_model_and_transforms`` hands one transform to every caller).

:func:`image_transform` is the pure tensor function; :func:`build_transform` wraps a config into a callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from medvl.config import Config
from medvl.errors import ConfigError, InputError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTransform",
    "ImageTransformConfig",
    "build_transform",
    "grayscale_transform",
    "image_transform",
    "tower_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R BT.601 luma weights (what PIL's ``convert("L")`` uses): RGB pixels into a grayscale model
LUMA = (0.299, 0.587, 0.114)


@dataclass
class ImageTransformConfig(Config):
    """How pixels become a tower's input.

    Attributes:
        size: side of the (square) input in pixels.
        resize: resize to this side first, then centre-crop ``size`` (``None``: resize straight to ``size``).
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        antialias: low-pass filter when shrinking (PyTorch's ``antialias``).
        channels: the colour space the weights were trained on: ``rgb``, or ``grayscale`` (RGB pixels are turned
            into luma; grayscale pixels stay as they are).
        mean: per-channel mean subtracted after scaling to [0, 1] (3 values for ``rgb``, 1 for ``grayscale``).
        std: per-channel standard deviation divided by.
        in_chans: channels of the tower's first layer; a grayscale input is replicated to them.
    """

    size: int = 224
    resize: int | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bicubic"
    antialias: bool = True
    channels: Literal["rgb", "grayscale"] = "rgb"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    in_chans: int = 3

    def validate(self) -> None:
        want = 3 if self.channels == "rgb" else 1
        if len(self.mean) != want or len(self.std) != want:
            raise ConfigError(f"ImageTransformConfig: {self.channels} needs {want} mean and std value(s)")
        if self.size < 1 or (self.resize is not None and self.resize < self.size):
            raise ConfigError("ImageTransformConfig: size must be >= 1 and resize (when set) >= size")
        if self.in_chans not in (1, 3) or (self.channels == "rgb" and self.in_chans != 3):
            raise ConfigError("ImageTransformConfig.in_chans: 3, or 1 for a grayscale tower")
        if any(s <= 0 for s in self.std):
            raise ConfigError("ImageTransformConfig.std: values must be positive")

    @classmethod
    def from_data_config(cls, data: dict[str, Any]) -> ImageTransformConfig:
        """From a timm-style data config (``input_size`` (c, h, w), ``mean``, ``std``, ``interpolation``, and a
        model card's ``resize_px``)."""
        c, h, w = (int(v) for v in data.get("input_size", (3, 224, 224)))
        if h != w:
            raise ConfigError(f"image towers take square inputs here; the data config asks for {h}x{w}")
        mode = "bicubic" if data.get("interpolation", "bicubic") == "bicubic" else "bilinear"
        return cls(size=h, resize=data.get("resize_px"), interpolation=mode,
                   mean=tuple(float(v) for v in data.get("mean", IMAGENET_MEAN)),
                   std=tuple(float(v) for v in data.get("std", IMAGENET_STD)), in_chans=c if c in (1, 3) else 3)

    def label(self) -> str:
        """A short description for people, e.g. ``32x32 grayscale``."""
        return f"{self.size}x{self.size} {self.channels}"


def grayscale_transform(size: int) -> ImageTransformConfig:
    """The BreastMNIST transform: grayscale scaled to [0, 1], bilinear to ``size``, standardised with mean 0.5 and
    std 0.25, replicated to three channels (what the demo model is trained on)."""
    return ImageTransformConfig(size=size, interpolation="bilinear", antialias=False, channels="grayscale",
                                mean=(0.5,), std=(0.25,), in_chans=3)


def _as_nchw(images: np.ndarray | torch.Tensor, device: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
        if not images.flags.writeable:  # e.g. pixels of a PIL image: torch wants memory it may write
            images = images.copy()
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise InputError(None, f"images must be uint8 pixels, got {x.dtype}")
    x = x.to(device, non_blocking=True) if device is not None else x
    if x.ndim == 3:  # [N, H, W] grayscale
        return x.unsqueeze(1).float().div_(255.0)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise InputError(None, f"images must be [N, H, W] or [N, H, W, 1|3] pixels, got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def image_transform(images: np.ndarray | torch.Tensor, config: ImageTransformConfig,
                    device: str | torch.device | None = None) -> torch.Tensor:
    """uint8 ``[N, H, W]`` (grayscale) or ``[N, H, W, C]`` pixels -> float ``[N, in_chans, size, size]``.

    Scale to [0, 1], match the colour space, resize (and centre-crop), standardise, replicate grayscale to the
    tower's channels. ``device`` moves the pixels first, so the arithmetic runs there as one batched operation.
    """
    x = _as_nchw(images, device)
    if config.channels == "grayscale" and x.shape[1] == 3:
        luma = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)
        x = (x * luma).sum(1, keepdim=True)
    elif config.channels == "rgb" and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    side = config.resize or config.size
    if tuple(x.shape[-2:]) != (side, side):
        kwargs = {} if config.interpolation == "nearest" else {"align_corners": False, "antialias": config.antialias}
        x = F.interpolate(x, size=(side, side), mode=config.interpolation, **kwargs).clamp_(0, 1)
    if side != config.size:
        top = (side - config.size) // 2
        x = x[..., top:top + config.size, top:top + config.size]
    mean = torch.tensor(config.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, device=x.device).view(1, -1, 1, 1)
    x = (x - mean) / std
    if x.shape[1] != config.in_chans:
        x = x.expand(-1, config.in_chans, -1, -1)
    return x.contiguous()


@dataclass(frozen=True)
class ImageTransform:
    """:func:`image_transform` bound to one config: ``transform(images, device=None)``."""

    config: ImageTransformConfig

    def __call__(self, images: np.ndarray | torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
        return image_transform(images, self.config, device)


def build_transform(config: ImageTransformConfig) -> ImageTransform:
    """The callable transform of ``config``."""
    return ImageTransform(config)


def tower_transform(tower: Any) -> ImageTransformConfig:
    """The transform an image tower takes: the one it carries (set from a checkpoint or training), else the one its
    data config describes, else ImageNet's at 224 px."""
    carried = getattr(tower, "transform_config", None)
    if carried is not None:
        return carried
    return ImageTransformConfig.from_data_config(getattr(tower, "data_config", None) or {})
