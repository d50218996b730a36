"""Pixel conversions shared by the backends: RGBA and OpenSlide's premultiplied ARGB into RGB uint8."""

from __future__ import annotations

import numpy as np

__all__ = ["argb_to_rgb", "rgba_to_rgb", "window_hwc"]


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


def window_hwc(array, axes: str, x: int, y: int, w: int, h: int) -> np.ndarray:
    """An RGB uint8 ``[h, w, 3]`` window of an array whose axes are named (``YXS``, ``CYX``, ``TCZYX``, ...): the
    first index of every other axis (time, z), channels last; the part outside the array is white."""
    index, kept = [], []
    for ax, n in zip(axes.upper(), array.shape, strict=True):
        if ax == "Y":
            index.append(slice(max(0, y), max(0, min(n, y + h))))
            kept.append("Y")
        elif ax == "X":
            index.append(slice(max(0, x), max(0, min(n, x + w))))
            kept.append("X")
        elif ax in "CS":
            index.append(slice(None))
            kept.append("C")
        else:
            index.append(0)
    data = np.asarray(array[tuple(index)])
    data = np.moveaxis(data, [kept.index("Y"), kept.index("X")], [0, 1])
    if "C" not in kept:
        data = data[..., None]
    data = data.reshape(data.shape[0], data.shape[1], -1)
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    out = np.full((h, w, 3), 255, np.uint8)
    oy, ox = max(0, -y), max(0, -x)
    out[oy:oy + data.shape[0], ox:ox + data.shape[1]] = rgba_to_rgb(data.astype(np.uint8, copy=False))[..., :3]
    return out
