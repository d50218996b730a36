"""Tile loading in parallel, in row-major order, with bounded memory.

:func:`iter_tile_batches` reads a :class:`~medvl.pathology.tiling.TileGrid` with a pool of threads. Slide decoders
(OpenSlide through ctypes, tifffile/imagecodecs, wsidicom) release the GIL while they decode, so threads scale
without copying tiles between processes. Thread-safe backends (OpenSlide) share one handle and its tile cache;
others get one handle per thread. At most ``prefetch`` batches are in flight,
so memory stays flat however large the slide; batches come out in grid order.

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
        out = np.empty((self.grid.tile_px, self.grid.tile_px, 3), dtype=np.uint8)
        self.read_into(index, out)
        return out

    def read_into(self, index: int, out: np.ndarray) -> None:
        """Tile ``index`` written into ``out`` (uint8 ``[tile_px, tile_px, 3]``, e.g. one slot of a batch)."""
        g = self.grid
        x, y = g.coords[index]
        if g.read_px == g.tile_px:
            self.slide.read_region_into((int(x), int(y)), g.level, (g.read_px, g.read_px), out)
            return
        from PIL import Image

        region = np.empty((g.read_px, g.read_px, 3), dtype=np.uint8)  # the direct-decoding path, then resize
        self.slide.read_region_into((int(x), int(y)), g.level, (g.read_px, g.read_px), region)
        out[...] = np.asarray(Image.fromarray(region).resize((g.tile_px, g.tile_px), Image.Resampling.BILINEAR))

    def read_many(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Tiles ``start:stop`` as uint8 ``[stop - start, tile_px, tile_px, 3]``, written into ``out`` if given."""
        if out is None:
            out = np.empty((stop - start, self.grid.tile_px, self.grid.tile_px, 3), dtype=np.uint8)
        for j, i in enumerate(range(start, stop)):
            self.read_into(i, out[j])
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
        prefetch: batches in flight (bounds memory: at most ``prefetch`` batches are allocated at once).

    Each batch is split into one run of consecutive tiles per worker; every run is decoded straight into its slots of
    the batch array (neighbouring tiles share decoded scanner tiles, and no re-batching copy is needed).
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
        px = grid.tile_px
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medvl-tiles") as pool:
            inflight: deque[tuple[np.ndarray, list[Future]]] = deque()
            try:
                for start, stop in bounds:
                    # every worker takes a share of each batch (consecutive tiles), so the batch is ready as soon
                    # as the slowest share is, and no worker idles on a short last batch
                    out = np.empty((stop - start, px, px, 3), dtype=np.uint8)
                    step = -(-(stop - start) // workers)
                    parts = [pool.submit(_read_part, slides, a, min(a + step, stop), out[a - start:a - start + step])
                             for a in range(start, stop, step)]
                    inflight.append((out, parts))
                    if len(inflight) >= prefetch:
                        yield _finished(inflight.popleft())
                while inflight:
                    yield _finished(inflight.popleft())
            finally:
                for _, parts in inflight:
                    for fut in parts:
                        fut.cancel()
    finally:
        slides.close()


def _read_part(slides: _ThreadSlides, start: int, stop: int, out: np.ndarray) -> None:
    slides.reader().read_many(start, stop, out)


def _finished(entry: tuple[np.ndarray, list[Future]]) -> np.ndarray:
    out, parts = entry
    for fut in parts:
        fut.result()
    return out


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
