"""Tile loading in parallel, in row-major order, with bounded memory.

:func:`iter_tile_batches` reads a :class:`~medvl.pathology.tiling.TileGrid` with a pool of threads. Slide decoders
(OpenSlide through ctypes, tifffile/imagecodecs, wsidicom) release the GIL while they decode, so threads scale
without copying tiles between processes. Thread-safe backends (OpenSlide) share one handle and its tile cache;
others get one handle per thread. At most ``workers * prefetch``
chunks are in flight, so memory stays flat however large the slide; batches come out in grid order.

:class:`TileDataset` is the same reading as a ``torch.utils.data.Dataset`` for users who prefer DataLoader worker
processes (each worker opens the slide lazily).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medvl.io.slide import Slide, open_slide
from medvl.pathology.tiling import TileGrid

__all__ = ["TileDataset", "TileReader", "iter_tile_batches"]


class TileReader:
    """Reads tiles of one grid from one slide handle: region at the grid's level, then resize to ``tile_px``."""

    def __init__(self, slide: Slide, grid: TileGrid):
        self.slide, self.grid = slide, grid

    def read(self, index: int) -> np.ndarray:
        """RGB uint8 ``[tile_px, tile_px, 3]`` for tile ``index``."""
        g = self.grid
        x, y = g.coords[index]
        region = self.slide.read_region((int(x), int(y)), g.level, (g.read_px, g.read_px))
        if g.read_px != g.tile_px:
            from PIL import Image

            region = np.asarray(Image.fromarray(region).resize((g.tile_px, g.tile_px), Image.Resampling.BILINEAR))
        return region

    def read_many(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.grid.tile_px, self.grid.tile_px, 3), dtype=np.uint8)
        for j, i in enumerate(range(start, stop)):
            out[j] = self.read(i)
        return out


class _ThreadSlides:
    """Slide handles for the reader threads: one shared handle when the backend is thread-safe (OpenSlide: one
    decoder cache for all threads), else one handle per thread opened on first use. Handles opened here are closed
    at the end; a caller's handle is left open."""

    def __init__(self, slide: Slide | Path, mpp: float | None, grid: TileGrid):
        self.grid = grid
        self.path, self.mpp = (slide.path, slide.mpp_override) if isinstance(slide, Slide) else (Path(slide), mpp)
        self._local = threading.local()
        self._opened: list[Slide] = []
        self._lock = threading.Lock()
        self._shared: TileReader | None = None
        if isinstance(slide, Slide) and slide.thread_safe:
            self._shared = TileReader(slide, grid)

    def reader(self) -> TileReader:
        if self._shared is not None:
            return self._shared
        rd = getattr(self._local, "reader", None)
        if rd is None:
            with self._lock:
                if self._shared is not None:
                    return self._shared
                slide = open_slide(self.path, mpp=self.mpp)
                self._opened.append(slide)
                rd = TileReader(slide, self.grid)
                if slide.thread_safe:
                    self._shared = rd
            self._local.reader = rd
        return rd

    def close(self) -> None:
        for s in self._opened:
            s.close()
        self._opened.clear()


def iter_tile_batches(
    slide: Slide | str | Path,
    grid: TileGrid,
    batch_size: int = 64,
    workers: int = 2,
    prefetch: int = 2,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, tiles uint8 [B, tile_px, tile_px, 3])`` over the grid in order.

    Args:
        slide: an open slide (its path and mpp override are reused by the worker threads) or a path.
        grid: the tiles to read.
        batch_size: tiles per yielded batch.
        workers: reader threads (0 reads in the calling thread).
        prefetch: batches in flight per worker (bounds memory).

    Each task reads one batch of consecutive tiles straight into its output array (neighbouring tiles share
    decoded scanner tiles, and no re-batching copy is needed).
    """
    n = len(grid)
    if n == 0:
        return
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    for (start, _), tiles in zip(bounds, _iter_chunks(slide, grid, bounds, workers, prefetch), strict=True):
        yield start, tiles


def _iter_chunks(slide, grid, bounds, workers, prefetch) -> Iterator[np.ndarray]:
    slides = _ThreadSlides(slide, None, grid)
    try:
        if workers <= 0:
            reader = slides.reader()
            for start, stop in bounds:
                yield reader.read_many(start, stop)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medvl-tiles") as pool:
            inflight: deque[Future] = deque()
            todo = iter(bounds)
            try:
                for start, stop in todo:
                    inflight.append(pool.submit(lambda a, b: slides.reader().read_many(a, b), start, stop))
                    if len(inflight) >= workers * prefetch:
                        yield inflight.popleft().result()
                while inflight:
                    yield inflight.popleft().result()
            finally:
                for fut in inflight:
                    fut.cancel()
    finally:
        slides.close()


class TileDataset:
    """``torch.utils.data.Dataset`` of one slide's tiles: ``(uint8 tensor [3, H, W], index)``.

    The slide opens lazily in each DataLoader worker process (handles are not shared across processes).
    """

    def __init__(self, slide_path: str | Path, grid: TileGrid, mpp: float | None = None):
        self.slide_path, self.grid, self.mpp = Path(slide_path), grid, mpp
        self._reader: TileReader | None = None

    def __len__(self) -> int:
        return len(self.grid)

    def __getitem__(self, index: int):
        import torch

        if self._reader is None:
            self._reader = TileReader(open_slide(self.slide_path, mpp=self.mpp), self.grid)
        tile = self._reader.read(index)
        return torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))), index

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None  # each process opens its own handle
        return state
