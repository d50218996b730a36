"""Pixel conversions shared by the backends: RGBA and OpenSlide's premultiplied ARGB into RGB uint8."""

from __future__ import annotations

import numpy as np

__all__ = ["argb_to_rgb", "rgba_to_rgb"]


def rgba_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Drop alpha; fully transparent pixels (outside the scanned area) become white background, not black.

    Returns a view when nothing needs changing (the caller copies once, into its batch).
    """
    rgb = arr[..., :3]
    if arr.shape[-1] == 4:
        alpha = arr[..., 3]
        if alpha.min() < 255:
            rgb = rgb.copy()
            rgb[alpha == 0] = 255
    return rgb


def argb_to_rgb(argb: np.ndarray, out: np.ndarray) -> None:
    """OpenSlide's premultiplied ARGB words (native little-endian uint32, row-major) into RGB uint8 ``out [h, w, 3]``,
    with :func:`rgba_to_rgb`'s rule for pixels outside the scanned area."""
    h, w = out.shape[:2]
    if argb.min() < 0xFF000000:  # some pixel not opaque: let PIL un-premultiply, as openslide-python does
        from PIL import Image

        rgba = Image.frombuffer("RGBa", (w, h), argb, "raw", "BGRa", 0, 1).convert("RGBA")
        out[...] = rgba_to_rgb(np.asarray(rgba))
        return
    bgra = argb.view(np.uint8).reshape(h, w, 4)  # little-endian ARGB words are B, G, R, A bytes
    out[..., 0], out[..., 1], out[..., 2] = bgra[..., 2], bgra[..., 1], bgra[..., 0]
