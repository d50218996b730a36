"""Artefact filters on the tissue mask: pen marks, out-of-focus regions, and a slot for a deep tissue segmenter.

Every filter has one interface, ``filter(slide, thumbnail, tissue) -> bool [h, w]`` on the tissue mask's grid (True
where the artefact is); :func:`apply_artefact_filters` runs the filters a :class:`ArtefactConfig` names (a registry:
``pen``, ``blur``, ``segmenter``) and removes what they find from the tissue mask. The removed regions travel with
the mask (``TissueMask.artefacts``): the mask PNG tints them (pen magenta, blur yellow, segmenter blue) and the
GeoJSON holds them as annotations classified ``Pen mark``, ``Out of focus`` and ``Segmenter: not tissue``.

Rule thresholds (HSV on the thumbnail, hue in degrees, saturation and value in [0, 1]; documented in
docs/pathology.md):

========  ============================  ==============  =========
pen       hue                           saturation      value
========  ============================  ==============  =========
red       <= 15 or >= 345               >= 0.45         >= 0.30
green     75 .. 170                     >= 0.25         >= 0.15
blue      190 .. 250                    >= 0.45         >= 0.15
========  ============================  ==============  =========

H&E stains lie outside these boxes: eosin is pink (hue about 320-345, saturation 0.2-0.45), haematoxylin purple
(hue 250-300). Ink strokes are dilated by ``dilate_um`` so their anti-aliased edges go too.

Connected ink pieces smaller than ``min_area_um2`` (5,000 µm², about 70 x 70 µm) are dropped: strokes are wider,
isolated saturated pixels of stain are not ink.

Blur: the variance of the Laplacian of the grey image read at ``blur.mpp`` (1 µm/px), per block of ``block_um``;
a tissue block whose variance is below ``min_laplacian_var`` is out of focus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config, field
from medvl.errors import ConfigError, InputError
from medvl.registry import Registry

__all__ = ["ARTEFACT_FILTERS", "ArtefactConfig", "BlurConfig", "PenConfig", "SegmenterConfig",
           "apply_artefact_filters", "blur_blocks", "hsv", "pen_mask"]


@dataclass
class PenConfig(Config):
    """Pen-mark rules: one HSV box per ink colour (hue range in degrees, minimum saturation and value)."""

    red: tuple[float, float, float, float] = (345.0, 15.0, 0.45, 0.30)
    green: tuple[float, float, float, float] = (75.0, 170.0, 0.25, 0.15)
    blue: tuple[float, float, float, float] = (190.0, 250.0, 0.45, 0.15)
    dilate_um: float = 16.0
    min_area_um2: float = 5000.0


@dataclass
class BlurConfig(Config):
    """Out-of-focus rule: Laplacian variance of the grey image at ``mpp``, per block of ``block_um``."""

    mpp: float = 1.0
    block_um: float = 128.0
    min_laplacian_var: float = 2e-4
    max_px: int = 8192
    min_tissue: float = 0.5


@dataclass
class SegmenterConfig(Config):
    """A deep tissue segmenter from a local file (GrandQC- or HEST-style).

    Attributes:
        path: the weights: a ``torch.export`` program (``arch: export``, ``.pt2``, the form LazySlide ships GrandQC
            in), a TorchScript file (``arch: torchscript``) or a state dict (safetensors, or a torch file
            read with ``weights_only=True``) of a torchvision segmentation network named by ``arch``
            (HEST's tissue segmenter is ``deeplabv3_resnet50`` with 2 classes).
        arch: ``export``, ``torchscript`` or a ``torchvision.models.segmentation`` builder name.
        num_classes: output classes of a torchvision network.
        tissue_classes: classes that are tissue; every other class is removed from the mask.
        mpp: resolution (µm/px) the network expects its input at.
        mean, std: input normalisation (RGB, 0..1 scale).
        tile_px: the image is segmented in windows of this size.
    """

    path: str | None = None
    arch: str = "export"
    num_classes: int = 2
    tissue_classes: list[int] = field(default_factory=lambda: [1])
    mpp: float = 4.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    tile_px: int = 512


@dataclass
class ArtefactConfig(Config):
    """Which artefact filters run on the tissue mask (``pen``, ``blur``, ``segmenter``; none by default)."""

    filters: list[str] = field(default_factory=list)
    pen: PenConfig = field(default_factory=PenConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def validate(self) -> None:
        for name in self.filters:
            ARTEFACT_FILTERS.get(name)
        if "segmenter" in self.filters and not self.segmenter.path:
            raise ConfigError("the 'segmenter' artefact filter needs the segmenter's weights (--segmenter PATH)")


#: filter name -> fn(slide, thumbnail, tissue_mask, config) -> bool mask of the artefact on the mask grid
ARTEFACT_FILTERS: Registry[Any] = Registry("artefact filter")


# ------------------------------------------------------------------------------------------------ pen marks
def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees), saturation and value in [0, 1] of an RGB uint8 image (pure array function)."""
    img = rgb.astype(np.float32) / 255.0
    vmax, vmin = img.max(axis=2), img.min(axis=2)
    delta = vmax - vmin
    sat = np.where(vmax > 0, delta / np.maximum(vmax, 1e-6), 0.0)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.select([vmax == r, vmax == g], [((g - b) / safe) % 6, (b - r) / safe + 2], (r - g) / safe + 4) * 60.0
    return np.where(delta > 0, hue, 0.0), sat, vmax


def _in_hue(hue: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (hue >= lo) & (hue <= hi) if lo <= hi else (hue >= lo) | (hue <= hi)  # a range that wraps round 0°


def pen_mask(rgb: np.ndarray, config: PenConfig | None = None, px_um: float | None = None) -> dict[str, np.ndarray]:
    """Pixels of red, green and blue ink in an RGB image (one bool mask per colour, dilated by ``dilate_um``)."""
    from scipy import ndimage as ndi

    config = config or PenConfig()
    hue, sat, val = hsv(rgb)
    radius = 0 if px_um is None else int(round(config.dilate_um / px_um))
    min_px = max(1, int(config.min_area_um2 / px_um**2)) if px_um else max(1, int(rgb.shape[0] * rgb.shape[1] * 1e-3))
    out = {}
    for colour in ("red", "green", "blue"):
        lo, hi, min_s, min_v = getattr(config, colour)
        mask = _in_hue(hue, lo, hi) & (sat >= min_s) & (val >= min_v)
        mask = _large_components(mask, min_px)  # ink strokes are wide; isolated stained pixels are not ink
        if radius > 0 and mask.any():
            mask = ndi.binary_dilation(mask, iterations=radius)
        out[colour] = mask
    return out


def _large_components(mask: np.ndarray, min_px: int) -> np.ndarray:
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    keep = np.bincount(labels.ravel()) >= min_px
    keep[0] = False
    return keep[labels]


@ARTEFACT_FILTERS.register("pen")
def pen_filter(slide, thumbnail: np.ndarray, tissue: np.ndarray, config: ArtefactConfig, scale_um: float | None):
    masks = pen_mask(thumbnail, config.pen, scale_um)
    return masks["red"] | masks["green"] | masks["blue"]


# ------------------------------------------------------------------------------------------------ blur
def blur_blocks(grey: np.ndarray, block_px: int, min_var: float, tissue: np.ndarray | None = None,
                min_tissue: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-block Laplacian variance of a grey image in [0, 1] and the blocks below ``min_var`` (on tissue)."""
    from scipy import ndimage as ndi

    lap = ndi.laplace(grey.astype(np.float32))
    h, w = grey.shape
    nby, nbx = max(1, h // block_px), max(1, w // block_px)
    crop = lap[:nby * block_px, :nbx * block_px].reshape(nby, block_px, nbx, block_px)
    var = crop.var(axis=(1, 3))
    blurred = var < min_var
    if tissue is not None:
        cover = tissue[:nby * block_px, :nbx * block_px].reshape(nby, block_px, nbx, block_px).mean(axis=(1, 3))
        blurred &= cover >= min_tissue
    return var, blurred


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]),
                                                                          Image.Resampling.NEAREST)) > 127


@ARTEFACT_FILTERS.register("blur")
def blur_filter(slide, thumbnail: np.ndarray, tissue: np.ndarray, config: ArtefactConfig, scale_um: float | None):
    cfg = config.blur
    mpp = slide.require_mpp()
    w0, h0 = slide.dimensions
    focus = slide.thumbnail(min(cfg.max_px, max(64, round(max(w0, h0) * mpp / cfg.mpp))))
    px_um = w0 * mpp / focus.shape[1]
    grey = focus.astype(np.float32).mean(axis=2) / 255.0
    block = max(4, int(round(cfg.block_um / px_um)))
    on_tissue = _resize_mask(tissue, grey.shape)
    _, blurred = blur_blocks(grey, block, cfg.min_laplacian_var, on_tissue, cfg.min_tissue)
    full = np.zeros(grey.shape, bool)
    full[:blurred.shape[0] * block, :blurred.shape[1] * block] = np.kron(blurred, np.ones((block, block), bool))
    return _resize_mask(full, tissue.shape)


# ------------------------------------------------------------------------------------------------ deep segmenter
def _load_segmenter(cfg: SegmenterConfig):
    import torch

    path = Path(cfg.path)
    if not path.is_file():
        raise InputError(path, "segmenter weights not found")
    if cfg.arch == "export":  # a torch.export program (.pt2), as LazySlide ships GrandQC
        try:
            return torch.export.load(str(path)).module()
        except Exception as exc:  # noqa: BLE001 - torch raises several types for a file that is not a program
            raise InputError(path, f"not a torch.export segmenter ({' '.join(str(exc).split())[:120]})") from None
    if cfg.arch == "torchscript":
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as exc:
            raise InputError(path, f"not a TorchScript segmenter ({' '.join(str(exc).split())[:120]})") from None
    import torchvision.models.segmentation as seg

    builder = getattr(seg, cfg.arch, None)
    if not callable(builder):
        raise ConfigError(f"unknown segmenter arch '{cfg.arch}' (export, torchscript or a "
                          "torchvision.models.segmentation builder such as deeplabv3_resnet50)")
    model = builder(weights=None, weights_backbone=None, num_classes=cfg.num_classes, aux_loss=None)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("aux_classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(path, f"weights do not match torchvision {cfg.arch} with {cfg.num_classes} classes "
                               f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected)")
    return _DictOutput(model).eval()


class _DictOutput:
    """torchvision segmentation networks return ``{"out": logits}``; the slot wants the logits."""

    def __init__(self, model):
        self.model = model

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, x):
        return self.model(x)["out"]


@ARTEFACT_FILTERS.register("segmenter")
def segmenter_filter(slide, thumbnail: np.ndarray, tissue: np.ndarray, config: ArtefactConfig,
                     scale_um: float | None):
    import torch

    cfg = config.segmenter
    model = _load_segmenter(cfg)
    w0, h0 = slide.dimensions
    mpp = slide.mpp
    image = slide.thumbnail(round(max(w0, h0) * mpp / cfg.mpp) if mpp else max(thumbnail.shape))
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    classes = np.zeros(image.shape[:2], np.int64)
    t = cfg.tile_px
    with torch.inference_mode():
        for y in range(0, image.shape[0], t):
            for x in range(0, image.shape[1], t):
                window = image[y:y + t, x:x + t]
                h, w = window.shape[:2]
                window = np.pad(window, ((0, t - h), (0, t - w), (0, 0)), mode="edge")  # every window t x t
                batch = (torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None].float() / 255 - mean)
                logits = model(batch / std)
                classes[y:y + h, x:x + w] = logits.argmax(1)[0, :h, :w].numpy()
    return _resize_mask(~np.isin(classes, cfg.tissue_classes), tissue.shape)


# ------------------------------------------------------------------------------------------------ apply
def apply_artefact_filters(slide, thumbnail: np.ndarray, tissue: np.ndarray, config: ArtefactConfig,
                           scale_um: float | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The tissue mask without the artefacts the configured filters find, and each filter's artefact mask (limited
    to what was tissue, so the PNG and GeoJSON show what was removed)."""
    removed: dict[str, np.ndarray] = {}
    mask = tissue.copy()
    for name in config.filters:
        found = ARTEFACT_FILTERS.get(name)(slide, thumbnail, tissue, config, scale_um) & tissue
        removed[name] = found
        mask &= ~found
    return mask, removed
