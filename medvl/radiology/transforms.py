"""The one CT preprocessing definition, for training and inference alike.

A :class:`CTPreprocessConfig` (stored in model configs and checkpoints) builds one MONAI ``Compose`` of dictionary
transforms:

1. ``Orientationd`` to RAS (or the configured axis codes), image and label map together;
2. :class:`~medvl.radiology.organ_crop.OrganCropd` (optional): a box in millimetres centred on an organ of the label
   map;
3. ``Spacingd``: resample to the target voxel size (x, y, z mm);
4. ``CropForegroundd`` (optional): the bounding box of voxels above ``foreground_hu`` (the body);
5. ``ScaleIntensityRanged``: the HU window (preset or level/width) scaled to [0, 1] and clipped;
6. ``ResizeWithPadOrCropd`` to ``spatial_size`` (x, y, z voxels), padding with 0 (below the window);
7. ``Transposed`` to the tower layout ``[1, D, H, W]`` = ``[1, z, y, x]`` and float32.

The order is fixed here and nowhere else; a model trained with one config reproduces its preprocessing exactly at
inference by rebuilding the chain from the stored config.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from medvl.config import Config, dataclass, field
from medvl.errors import ConfigError, MedvlError

__all__ = [
    "TRANSFORM_VERSION",
    "WINDOW_PRESETS",
    "CTPreprocessConfig",
    "OrganCropConfig",
    "build_transforms",
    "preprocess_volume",
    "run_chain",
    "window_bounds",
]

#: bump when the chain's arithmetic changes: part of every cache key
TRANSFORM_VERSION = 1

#: HU window presets: name -> (level, width)
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "soft_tissue": (50.0, 350.0),
}

#: fill value (HU) where an organ box extends past the scan: air
AIR_HU = -1024.0


@dataclass
class OrganCropConfig(Config):
    """A physical box around an organ of a label map (RenalCLIP crops such a box around the kidney).

    Attributes:
        labels: organ names of the TotalSegmentator v2 map (``"kidney_left"``), group names (``"kidneys"``), or
            integer label ids; their union is the organ.
        box_mm: box size along x, y, z in millimetres, centred on the organ's centroid.
    """

    labels: list[int | str] = field(default_factory=lambda: ["kidneys"])
    box_mm: tuple[float, float, float] = (160.0, 160.0, 96.0)

    def validate(self) -> None:
        if not self.labels:
            raise ConfigError("OrganCropConfig.labels: give at least one organ name or label id")
        if any(v <= 0 for v in self.box_mm):
            raise ConfigError(f"OrganCropConfig.box_mm: sizes must be positive, got {self.box_mm}")
        from medvl.radiology.labels import resolve_label_ids

        resolve_label_ids(self.labels)  # unknown names fail here, when the config is built

    def label_ids(self) -> list[int]:
        from medvl.radiology.labels import resolve_label_ids

        return resolve_label_ids(self.labels)


@dataclass
class CTPreprocessConfig(Config):
    """Parameters of the CT preprocessing chain (see the module docstring for the order).

    Attributes:
        orientation: target axis codes (``"RAS"``).
        spacing: target voxel size (x, y, z) in mm; ``None`` keeps the native spacing.
        window: HU window preset (``abdomen``, ``lung``, ``bone``, ``brain``, ``soft_tissue``); set ``None`` and give
            ``level``/``width`` for a custom window.
        level: custom window centre in HU.
        width: custom window width in HU.
        spatial_size: output size (x, y, z) in voxels after padding/cropping; the tower sees ``[1, z, y, x]``.
        foreground_crop: crop to the body (voxels above ``foreground_hu``) before padding/cropping.
        foreground_hu: HU threshold of the foreground.
        foreground_margin: voxels kept around the foreground box.
        organ_crop: crop a box around an organ of a label map first (needs a label map at preprocessing time).
        interpolation: resampling of the image (``bilinear`` or ``nearest``).
    """

    resolved_name = "ct_preprocess.json"

    orientation: str = "RAS"
    spacing: tuple[float, float, float] | None = (1.5, 1.5, 3.0)
    window: str | None = "abdomen"
    level: float | None = None
    width: float | None = None
    spatial_size: tuple[int, int, int] = (128, 128, 32)
    foreground_crop: bool = True
    foreground_hu: float = -500.0
    foreground_margin: int = 2
    organ_crop: OrganCropConfig | None = None
    interpolation: str = "bilinear"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> CTPreprocessConfig:
        """As :meth:`Config.from_dict`; a nested organ crop is built first so its errors keep their message."""
        crop = data.get("organ_crop") if isinstance(data, dict) else None
        if isinstance(crop, dict):
            try:
                data = {**data, "organ_crop": OrganCropConfig.from_dict(crop)}
            except ConfigError as exc:
                raise ConfigError(f"{source + ': ' if source else ''}CTPreprocessConfig.organ_crop: {exc}") from None
        return super().from_dict(data, source=source)

    def validate(self) -> None:
        if not _valid_axcodes(self.orientation):
            raise ConfigError(f"CTPreprocessConfig.orientation: not valid axis codes: {self.orientation!r} (e.g. RAS)")
        if self.window is not None and self.window not in WINDOW_PRESETS:
            raise ConfigError(
                f"CTPreprocessConfig.window: unknown preset {self.window!r} (known: {', '.join(WINDOW_PRESETS)};"
                " or set window to null and give level and width)"
            )
        custom = (self.level is not None, self.width is not None)
        if self.window is not None and any(custom):
            raise ConfigError("CTPreprocessConfig: give either a window preset or level/width, not both")
        if self.window is None and not all(custom):
            raise ConfigError("CTPreprocessConfig: without a window preset, both level and width are required")
        if self.width is not None and self.width <= 0:
            raise ConfigError(f"CTPreprocessConfig.width: must be positive, got {self.width}")
        if self.spacing is not None and any(s <= 0 for s in self.spacing):
            raise ConfigError(f"CTPreprocessConfig.spacing: must be positive, got {self.spacing}")
        if any(s < 1 for s in self.spatial_size):
            raise ConfigError(f"CTPreprocessConfig.spatial_size: must be >= 1, got {self.spatial_size}")
        if self.interpolation not in ("bilinear", "nearest"):
            raise ConfigError(f"CTPreprocessConfig.interpolation: bilinear or nearest, got {self.interpolation!r}")

    def fingerprint(self) -> str:
        """A hash of everything that changes the output (config and chain version): part of cache keys."""
        blob = json.dumps({"config": self.to_dict(), "version": TRANSFORM_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def tower_input_shape(self) -> tuple[int, int, int, int]:
        """``(1, D, H, W)`` of the chain's output."""
        x, y, z = self.spatial_size
        return (1, z, y, x)


def _valid_axcodes(codes: str) -> bool:
    """Three codes, one of R/L, one of A/P, one of S/I."""
    axis = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    return len(codes) == 3 and sorted(axis.get(c, -1) for c in codes.upper()) == [0, 1, 2]


def window_bounds(config: CTPreprocessConfig) -> tuple[float, float]:
    """HU range ``(low, high)`` mapped to [0, 1]."""
    level, width = WINDOW_PRESETS[config.window] if config.window else (config.level, config.width)
    return float(level) - float(width) / 2.0, float(level) + float(width) / 2.0


class AboveHU:
    """Foreground selector for ``CropForegroundd`` (a class, not a lambda, so the chain pickles for workers)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, x: Any) -> Any:
        return x > self.threshold


# ------------------------------------------------------------------------------------------------- the chain
def build_transforms(config: CTPreprocessConfig, with_label: bool = False):
    """The MONAI ``Compose`` for ``config`` on dicts ``{"image": MetaTensor[1, X, Y, Z] (HU), "label": ...}``.

    Args:
        config: the preprocessing parameters.
        with_label: the input dict carries a ``"label"`` map (needed when ``config.organ_crop`` is set).
    """
    from monai.transforms import (
        Compose,
        CropForegroundd,
        DeleteItemsd,
        EnsureTyped,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        Spacingd,
        Transposed,
    )

    if config.organ_crop is not None and not with_label:
        raise ConfigError("the preprocessing config has an organ crop: a label map is required (--labels)")
    keys = ["image", "label"] if with_label else ["image"]
    chain: list[Any] = [Orientationd(keys=keys, axcodes=config.orientation.upper(), labels=None)]
    if config.organ_crop is not None:
        from medvl.radiology.organ_crop import OrganCropd

        chain.append(OrganCropd(keys, "label", config.organ_crop.label_ids(), config.organ_crop.box_mm,
                                fill={"image": AIR_HU}))
    if with_label:
        chain.append(DeleteItemsd(keys="label"))
    if config.spacing is not None:
        chain.append(Spacingd(keys="image", pixdim=config.spacing, mode=config.interpolation, dtype=np.float32))
    if config.foreground_crop:
        chain.append(CropForegroundd(keys="image", source_key="image", select_fn=AboveHU(config.foreground_hu),
                                     margin=config.foreground_margin, allow_smaller=True))
    low, high = window_bounds(config)
    chain += [
        ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        ResizeWithPadOrCropd(keys="image", spatial_size=config.spatial_size),
        Transposed(keys="image", indices=(0, 3, 2, 1)),
        EnsureTyped(keys="image", data_type="numpy", dtype=np.float32, track_meta=False),
    ]
    return Compose(chain)


def as_meta_tensor(array: np.ndarray, affine: np.ndarray):
    """A channel-first MONAI ``MetaTensor`` from an (X, Y, Z) array and its RAS affine."""
    import torch
    from monai.data import MetaTensor

    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)[None]), affine=torch.as_tensor(affine))


def run_chain(volume: Any, config: CTPreprocessConfig, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Run the chain on a :class:`~medvl.io.volume.Volume` (and its label map).

    Returns:
        ``(array, affine)``: float32 ``[1, D, H, W]`` in [0, 1], and the voxel -> RAS affine of the output grid in
        (x, y, z) order (before the final transpose).
    """
    data = {"image": as_meta_tensor(volume.array.astype(np.float32, copy=False), volume.affine)}
    if labels is not None:
        data["label"] = as_meta_tensor(labels.array.astype(np.float32, copy=False), labels.affine)
    chain = build_transforms(config, with_label=labels is not None)
    layout = len(chain.transforms) - 2  # the last two only transpose and cast
    try:
        data = chain(data, end=layout)
        affine = np.asarray(data["image"].affine, dtype=np.float64)
        data = chain(data, start=layout)
    except RuntimeError as exc:  # MONAI wraps errors raised inside a transform; surface ours unchanged
        cause = exc.__cause__
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, MedvlError):
            raise cause from None
        raise
    return np.ascontiguousarray(data["image"], dtype=np.float32), affine


def preprocess_volume(volume: Any, config: CTPreprocessConfig, labels: Any = None) -> np.ndarray:
    """The chain's output for a volume: float32 ``[1, D, H, W]`` in [0, 1]."""
    return run_chain(volume, config, labels)[0]
