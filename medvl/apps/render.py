"""Image rendering for the viewers: overlays (masks, score maps, label maps), boxes, CT windowing, resizing.

Pure array functions: ``uint8`` RGB ``[H, W, 3]`` in, ``uint8`` RGB out.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "blend_labels",
    "blend_mask",
    "blend_scores",
    "colorize",
    "draw_box",
    "label_palette",
    "resize",
    "window",
]


def resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize to ``(width, height)`` with PIL (bilinear, or nearest for masks and labels)."""
    from PIL import Image

    w, h = max(1, int(size[0])), max(1, int(size[1]))
    if img.shape[1] == w and img.shape[0] == h:
        return img
    mode = Image.NEAREST if nearest else Image.BILINEAR
    if img.dtype == bool:
        return np.asarray(Image.fromarray(img.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    if img.dtype != np.uint8:
        return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((w, h), mode))
    return np.asarray(Image.fromarray(img).resize((w, h), mode))


def _fit(layer: np.ndarray, shape: tuple[int, ...], nearest: bool = True) -> np.ndarray:
    return resize(layer, (shape[1], shape[0]), nearest=nearest) if layer.shape[:2] != tuple(shape[:2]) else layer


def blend_mask(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (0, 200, 80),
               alpha: float = 0.4) -> np.ndarray:
    """Tint the pixels where ``mask`` is True (the mask is resized to the image when needed)."""
    mask = _fit(np.asarray(mask, dtype=bool), rgb.shape)
    out = rgb.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = "inferno", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Scalar map -> RGBA ``uint8``; NaN is fully transparent."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    span = vmax - vmin if vmax > vmin else 1e-6
    norm = np.clip((values - vmin) / span, 0.0, 1.0)
    rgba = colormaps[cmap](np.nan_to_num(norm), bytes=True)
    rgba[..., 3] = np.where(np.isfinite(values), 255, 0)
    return rgba


def blend_scores(rgb: np.ndarray, canvas: np.ndarray, alpha: float = 0.5, cmap: str = "inferno",
                 vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Paint a score canvas (NaN where no tile) over the image with opacity ``alpha``."""
    rgba = colorize(_fit(np.asarray(canvas, np.float32), rgb.shape), cmap, vmin, vmax)
    a = alpha * (rgba[..., 3:4].astype(np.float32) / 255.0)
    out = (1 - a) * rgb.astype(np.float32) + a * rgba[..., :3].astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)


def draw_box(rgb: np.ndarray, box: tuple[float, float, float, float], color: tuple[int, int, int] = (30, 144, 255),
             width: int = 2) -> np.ndarray:
    """Draw a rectangle outline ``(x0, y0, x1, y1)`` in pixel coordinates (clipped to the image)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = sorted((max(0, min(w - 1, x0)), max(0, min(w - 1, x1))))
    y0, y1 = sorted((max(0, min(h - 1, y0)), max(0, min(h - 1, y1))))
    c = np.asarray(color, np.uint8)
    out[y0:y0 + width, x0:x1 + 1] = c
    out[max(y0, y1 - width + 1):y1 + 1, x0:x1 + 1] = c
    out[y0:y1 + 1, x0:x0 + width] = c
    out[y0:y1 + 1, max(x0, x1 - width + 1):x1 + 1] = c
    return out


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT display window: HU in ``[level - width/2, level + width/2]`` mapped to 0..255 (clipped)."""
    width = max(float(width), 1.0)
    lo = level - width / 2.0
    return (np.clip((np.asarray(hu, np.float32) - lo) / width, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def label_palette(n: int = 256, seed: int = 7) -> np.ndarray:
    """A fixed colour per label id (``[n, 3] uint8``; id 0 = background is black)."""
    from matplotlib import colormaps

    base = np.asarray(colormaps["tab20"].colors + colormaps["Set3"].colors)
    rng = np.random.default_rng(seed)
    colours = base[np.arange(n) % len(base)] * 0.85 + rng.uniform(0, 0.15, (n, 3))
    out = (np.clip(colours, 0, 1) * 255).astype(np.uint8)
    out[0] = 0
    return out


def blend_labels(gray_or_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.4,
                 palette: np.ndarray | None = None) -> np.ndarray:
    """Colour each non-zero label over the image (same height/width), background untouched."""
    rgb = gray_or_rgb if gray_or_rgb.ndim == 3 else np.repeat(gray_or_rgb[..., None], 3, axis=2)
    labels = np.asarray(labels).astype(np.int64)
    pal = palette if palette is not None else label_palette(max(256, int(labels.max(initial=0)) + 1))
    fg = labels > 0
    out = rgb.astype(np.float32).copy()
    out[fg] = (1 - alpha) * out[fg] + alpha * pal[labels[fg]].astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)
