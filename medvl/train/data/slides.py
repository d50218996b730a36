"""``slide`` rows of the ``manifest`` dataset, read as tiles or as a bag of tile features (manifest readers).

- ``slide-tiles`` (the default for ``slide`` rows): tiles read on the fly from each slide at the grid of its
  ``medvl slide tile`` store (the ``tiles`` column: level-0 coordinates, read level and mpp as tiling wrote them),
  each paired with its slide's report (weak supervision). Every slide gives at most ``tiles_per_slide`` items per
  epoch, each a tile drawn from the item's seeded generator (evenly spaced tiles when evaluating). Slide readers
  stay open across items (at most ``max_open_slides``, least recently used closed first).
- ``slide-features``: the slide's tile features from its features ``.h5`` (the ``features`` column, written by
  ``medvl slide extract``) as one bag of ``bag_size`` tiles (drawn with replacement when the slide has fewer), for a
  bag tower: slide-level alignment with the report (TITAN / PRISM style). Every bag must have ``feature_dim``
  features per tile (default: the first bag's).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvl.models.domain import DataDomain
from medvl.models.transforms import ImageTransformConfig, image_transform
from medvl.train.data.readers import register_reader

__all__ = ["SlideFeatureReader", "SlideTileReader"]


def _column_path(row: Any, column: str, base: Path) -> Path:
    value = row.get(column)
    if value is None:
        raise _CellError(column, "empty (the slide's store)")
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


class _CellError(ValueError):
    """A problem of one cell: the reader names the column."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


class SlideTileReader:
    """Tiles of each slide at its tile store's grid, through the one image transform; random flips when augmenting."""

    field = "image"
    modality = "image"

    def __init__(self, transform: ImageTransformConfig, domain: DataDomain, tiles_per_slide: int, max_open: int,
                 base: Path, column: str = "tiles"):
        self.preprocessing, self.domain = transform, domain
        self.tiles_per_slide, self.max_open, self.base, self.column = tiles_per_slide, max_open, base, column
        self._grids: dict[int, Any] = {}
        self._open: OrderedDict[str, Any] = OrderedDict()

    def grid(self, row: Any) -> Any:
        """The row's tile grid (read once from its store)."""
        if row.row not in self._grids:
            from medvl.io.features import FeatureStore
            from medvl.pathology.tiling import TileGrid

            path = _column_path(row, self.column, self.base)
            if not path.is_file():
                raise _CellError(self.column, f"'{path.name}' not found (run: medvl slide tile)")
            grid = TileGrid.from_table(FeatureStore(path).read())
            if len(grid) == 0:
                raise _CellError(self.column, f"'{path.name}' holds no tiles")
            self._grids[row.row] = grid
        return self._grids[row.row]

    def _reader(self, row: Any) -> Any:
        """A tile reader of the row's grid on the slide's open handle (opened once, kept open)."""
        from medvl.io.slide import open_slide
        from medvl.pathology.loader import TileReader

        grid = self.grid(row)
        key = str(row.path)
        if key in self._open:
            self._open.move_to_end(key)
        else:
            mpp = row.get("slide_mpp")
            self._open[key] = open_slide(row.path, mpp=float(mpp) if mpp is not None else None)
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.close()
        return TileReader(self._open[key], grid)

    def items(self, row: Any) -> int:
        return min(self.tiles_per_slide, len(self.grid(row)))

    def check(self, row: Any) -> None:
        """The store holds a grid and the slide opens and reads its first tile."""
        self._reader(row).read(0)

    def load(self, row: Any, rng: torch.Generator | None, occurrence: int = 0, copies: int = 1) -> torch.Tensor:
        n = len(self.grid(row))
        index = int(torch.randint(n, (), generator=rng)) if rng is not None else occurrence * n // max(copies, 1)
        x = image_transform(self._reader(row).read(index)[None], self.preprocessing)[0]
        if rng is not None and torch.rand((), generator=rng) < 0.5:
            x = x.flip(-1)
        return x

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # each process opens its own handles
        return state


class SlideFeatureReader:
    """A slide's tile features as one bag of ``bag_size`` tiles (``[bag_size, D]``)."""

    field = "bag"
    modality = "bag"
    preprocessing = None

    def __init__(self, bag_size: int, feature_dim: int | None, base: Path, column: str = "features"):
        self.bag_size, self.feature_dim, self.base, self.column = bag_size, feature_dim, base, column
        self.domain = DataDomain("slide", channels="rgb")

    def _features(self, row: Any) -> np.ndarray:
        from medvl.io.features import read_features

        path = _column_path(row, self.column, self.base)
        if not path.is_file():
            raise _CellError(self.column, f"'{path.name}' not found (run: medvl slide extract)")
        return read_features(path)[0]

    def check(self, row: Any) -> None:
        feats = self._features(row)
        if self.feature_dim is None:
            self.feature_dim = int(feats.shape[1])
        if feats.ndim != 2 or feats.shape[1] != self.feature_dim:
            raise _CellError(self.column, f"{feats.shape[-1]}-d features, the bag tower takes {self.feature_dim}")

    def load(self, row: Any, rng: torch.Generator | None, occurrence: int = 0, copies: int = 1) -> torch.Tensor:
        feats = self._features(row)
        n = feats.shape[0]
        spaced = np.arange(self.bag_size)
        if rng is None:  # evaluation: evenly spaced tiles (each once when the slide has enough)
            picks = spaced * n // self.bag_size if n >= self.bag_size else spaced % n
        elif n >= self.bag_size:
            picks = torch.randperm(n, generator=rng)[: self.bag_size].numpy()
        else:
            picks = torch.randint(n, (self.bag_size,), generator=rng).numpy()
        return torch.from_numpy(np.ascontiguousarray(feats[np.sort(picks)], dtype=np.float32))


@register_reader("slide-tiles")
def _slide_tiles(opts: Any) -> SlideTileReader:
    transform = ImageTransformConfig.from_dict(dict(opts.image), source="manifest image")
    domain = DataDomain(opts.domain or "slide", channels="rgb", stain=opts.stain)
    return SlideTileReader(transform, domain, opts.tiles_per_slide, opts.max_open_slides,
                           opts.manifest_path().parent)


@register_reader("slide-features")
def _slide_features(opts: Any) -> SlideFeatureReader:
    return SlideFeatureReader(opts.bag_size, opts.feature_dim, opts.manifest_path().parent)
