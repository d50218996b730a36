"""Image fingerprints for duplicate detection: exact bytes, exact pixels, perceptual hashes and a thumbnail vector.

- ``sha256`` of the file: byte-identical copies.
- :func:`pixel_hash`: the decoded pixels (same image saved again with other metadata or lossless compression).
- :func:`dhash` (difference hash: signs of horizontal gradients of a 9x8 thumbnail) and :func:`phash` (signs of the
  8x8 lowest DCT frequencies of a 32x32 thumbnail against their median): 64-bit codes that survive re-encoding,
  resizing and mild colour changes; two images are near-duplicates when their codes differ in few bits.
- :func:`dihedral` views (flips and rotations) and :func:`phash_crops` (hashes of sub-images on a lattice of
  positions and scales) of an image: a flipped or cropped copy is found by hashing every view of the query against the
  base codes.
- :func:`thumbnail_vector`: a small zero-mean, unit-norm grey thumbnail; the inner product of two is the correlation
  of the thumbnails, an embedding that needs no model.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from medvl.hashing import bytes_hash

__all__ = ["HASH_BITS", "area_resize", "crop_boxes", "dhash", "dhash_many", "dihedral", "grey", "hamming", "phash",
           "phash_crops", "phash_many", "pixel_hash", "thumbnail_many", "thumbnail_vector"]

HASH_BITS = 64


def grey(image: np.ndarray) -> np.ndarray:
    """A ``[H, W]`` float32 grey image in 0..255 from a grey or RGB(A) uint8/float array."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected an [H, W] or [H, W, C] image, got shape {arr.shape}")
    return arr.astype(np.float32)


@lru_cache(maxsize=1024)
def _area_matrix(n_in: int, n_out: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``[n_out, n_in]`` weights of an area (box) resize along one axis of the span ``[lo, hi]`` (fractions of the
    axis): output bin o averages the input pixels it overlaps, each by the length of the overlap."""
    edges = np.linspace(lo * n_in, hi * n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def area_resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-filtered resize of ``[..., H, W]`` grey images to ``[..., height, width]`` (every source pixel counts)."""
    h, w = images.shape[-2:]
    return _area_matrix(h, height) @ images.astype(np.float32) @ _area_matrix(w, width).T


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is ``scipy.fft.dct(x, norm='ortho')``."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def _stack(images: list[np.ndarray]) -> dict[tuple[int, int], tuple[list[int], np.ndarray]]:
    """Grey images grouped by shape: shape -> (their positions, ``[B, H, W]`` stack)."""
    groups: dict[tuple[int, int], list[int]] = {}
    greys = [grey(im) for im in images]
    for k, g in enumerate(greys):
        groups.setdefault(g.shape, []).append(k)
    return {shape: (idx, np.stack([greys[k] for k in idx])) for shape, idx in groups.items()}


def _batched(images: list[np.ndarray], fn) -> np.ndarray:
    out: list[np.ndarray | None] = [None] * len(images)
    for idx, stack in _stack(images).values():
        for k, value in zip(idx, fn(stack), strict=True):
            out[k] = value
    return np.stack(out)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits.reshape(bits.shape[0], -1).astype(np.uint8), axis=1)


def dhash_many(images: list[np.ndarray]) -> np.ndarray:
    """64-bit difference hashes ``[N, 8]`` (bytes) of a list of images."""
    def fn(stack):
        small = area_resize(stack, 8, 9)
        return _pack(small[:, :, 1:] > small[:, :, :-1])

    return _batched(images, fn)


def phash_many(images: list[np.ndarray]) -> np.ndarray:
    """64-bit DCT perceptual hashes ``[N, 8]`` (bytes): signs of the 8x8 lowest frequencies of a 32x32 thumbnail
    against their median."""
    d = _dct_matrix(32)

    def fn(stack):
        low = (d @ area_resize(stack, 32, 32) @ d.T)[:, :8, :8].reshape(len(stack), -1)
        return _pack(low > np.median(low, axis=1, keepdims=True))

    return _batched(images, fn)


def thumbnail_many(images: list[np.ndarray], size: int = 16) -> np.ndarray:
    """Zero-mean, unit-norm ``size x size`` grey thumbnails ``[N, size * size]`` (float32)."""
    def fn(stack):
        small = area_resize(stack, size, size).reshape(len(stack), -1)
        small = small - small.mean(1, keepdims=True)
        norm = np.linalg.norm(small, axis=1, keepdims=True)
        return np.divide(small, norm, out=np.zeros_like(small), where=norm > 0)

    return _batched(images, fn)


def dhash(image: np.ndarray) -> np.ndarray:
    """64-bit difference hash as 8 bytes."""
    return dhash_many([image])[0]


def phash(image: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash as 8 bytes."""
    return phash_many([image])[0]


def thumbnail_vector(image: np.ndarray, size: int = 16) -> np.ndarray:
    """Zero-mean, unit-norm ``size x size`` grey thumbnail (flattened, float32)."""
    return thumbnail_many([image], size)[0]


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of an image (the identity first)."""
    views = []
    for k in range(4):
        rot = np.rot90(image, k)
        views += [rot, rot[:, ::-1]]
    return [np.ascontiguousarray(v) for v in views]


def crop_boxes(scales: tuple[float, ...], grid: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Crop boxes ``((row_lo, row_hi), (col_lo, col_hi))`` (fractions of each axis) keeping ``scale`` of both sides,
    at a ``grid x grid`` lattice of positions, for every scale."""
    boxes = []
    for s in scales:
        spans = [(float(p), float(p) + s) for p in np.linspace(0.0, 1.0 - s, grid)]
        boxes += [(r, c) for r in spans for c in spans]
    return boxes


@lru_cache(maxsize=64)
def _crop_dct(h: int, w: int, scales: tuple[float, ...], grid: int) -> tuple[np.ndarray, np.ndarray]:
    """For the full image and every crop (row span x column span): ``D8 @ A_rows`` ``[C, 8, h]`` and
    ``A_cols.T @ D8.T`` ``[C, w, 8]``, so the 8x8 lowest DCT frequencies of a crop's 32x32 thumbnail are one product."""
    d8 = _dct_matrix(32)[:8]
    boxes = [((0.0, 1.0), (0.0, 1.0)), *crop_boxes(scales, grid)]
    left = np.stack([d8 @ _area_matrix(h, 32, *r) for r, _ in boxes])
    right = np.stack([_area_matrix(w, 32, *c).T @ d8.T for _, c in boxes])
    return left, right


def phash_crops(image: np.ndarray, scales: tuple[float, ...] = (0.9, 0.85, 0.8), grid: int = 4) -> np.ndarray:
    """Perceptual hashes ``[1 + C, 8]`` of the image and of its crops (each scale at a ``grid x grid`` lattice of
    positions): a cropped copy of an image is close to one of them."""
    g = grey(image)
    left, right = _crop_dct(g.shape[0], g.shape[1], tuple(scales), grid)
    low = ((left @ g) @ right).reshape(len(left), -1)
    return _pack(low > np.median(low, axis=1, keepdims=True))


def hamming(x: np.ndarray, y: np.ndarray) -> np.ndarray | int:
    """Differing bits between packed codes: two codes give an int; ``[V, 8]`` against ``[8]`` gives ``[V]``."""
    bits = np.unpackbits(np.bitwise_xor(x, y), axis=-1).sum(-1)
    return int(bits) if np.ndim(bits) == 0 else bits


def pixel_hash(image: np.ndarray) -> str:
    """Hash of the decoded pixels with their shape and type (identical pixels, whatever the file format)."""
    arr = np.ascontiguousarray(image)
    return bytes_hash(f"{arr.shape}{arr.dtype}".encode() + arr.tobytes())
