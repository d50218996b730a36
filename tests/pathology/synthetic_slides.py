"""Small slides in real file formats, written with tifffile, for the whole-slide tests.

The pixel content is a drawn H&E-like scene (pink/purple tissue with a hole on white glass) so tissue detection has
something real to find; the files themselves are genuine tiled-pyramid, strip and multichannel TIFFs that OpenSlide
and tiffslide read like scanner output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def he_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8: white glass with an elliptical pink tissue piece holding a round hole, plus purple nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.full((height, width, 3), 242, np.float32) + rng.normal(0, 2, (height, width, 3))
    cx, cy = width * 0.45, height * 0.5
    tissue = ((xx - cx) / (width * 0.3)) ** 2 + ((yy - cy) / (height * 0.35)) ** 2 < 1
    hole = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) * 0.08) ** 2
    tissue &= ~hole
    pink = np.array([225, 140, 185], np.float32)
    img[tissue] = pink + rng.normal(0, 8, (int(tissue.sum()), 3))
    nuclei = tissue & (rng.random((height, width)) < 0.02)
    img[nuclei] = np.array([110, 60, 150], np.float32)
    return img.clip(0, 255).astype(np.uint8)


def _resolution(mpp: float) -> dict:
    return {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}


def write_pyramid_tiff(path: Path, width: int = 1024, height: int = 768, mpp: float = 0.25, levels: int = 3,
                       tile: int = 128, image: np.ndarray | None = None) -> Path:
    """A tiled pyramidal TIFF (one IFD per level, each half the previous), with the level-0 mpp in its tags."""
    import tifffile
    from PIL import Image

    base = he_scene(width, height) if image is None else image
    with tifffile.TiffWriter(path) as tw:
        img = base
        for level in range(levels):
            tw.write(img, tile=(tile, tile), photometric="rgb", compression="zlib",
                     subfiletype=0 if level == 0 else 1, **_resolution(mpp * 2**level))
            img = np.asarray(Image.fromarray(img).resize((max(1, img.shape[1] // 2), max(1, img.shape[0] // 2))))
    return path


def write_strip_tiff(path: Path, width: int = 600, height: int = 400, mpp: float = 0.5) -> Path:
    """A plain (non-tiled, single-level) strip TIFF, the kind OpenSlide refuses."""
    import tifffile

    tifffile.imwrite(path, he_scene(width, height, seed=1), photometric="rgb", rowsperstrip=16, **_resolution(mpp))
    return path


def write_fluorescence_tiff(path: Path, width: int = 512, height: int = 512, channels: int = 4) -> Path:
    """A multiplexed-fluorescence style TIFF: ``channels`` uint16 planes (not RGB)."""
    import tifffile

    rng = np.random.default_rng(2)
    data = rng.integers(0, 4000, (channels, height, width), dtype=np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate", tile=(128, 128),
                     **_resolution(0.5))
    return path


def write_blank_tiff(path: Path, width: int = 512, height: int = 512, mpp: float = 0.5) -> Path:
    """Empty glass: a tiled TIFF with no tissue at all."""
    rng = np.random.default_rng(3)
    glass = (243 + rng.normal(0, 2, (height, width, 3))).clip(0, 255).astype(np.uint8)
    return write_pyramid_tiff(path, width, height, mpp=mpp, levels=1, image=glass)


def write_truncated_copy(src: Path, dst: Path, keep: float = 0.3) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst
