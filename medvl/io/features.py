"""Per-slide feature store: one HDF5 file per slide, in the layout CLAM and TRIDENT users already know.

Layout written by medvl::

    <slide_id>.h5
      coords           int64 [N, 2]   top-left corner of each tile in level-0 pixels (x, y)
      features         float32 [N, D] one row per tile (added by ``medvl slide extract``)
      tissue_fraction  float32 [N]    share of each tile covered by the tissue mask (optional)
      attrs (file and ``coords``): mpp, tile_px, patch_size_level0, level, slide_path, mpp_source, overlap_px, ...
      attrs (file, after extraction): encoder, embed_dim, projected, medvl_version
      attrs (file): medvl_provenance   JSON record of what made the tiles and features (:mod:`medvl.provenance`)

``coords`` also carries CLAM's ``patch_size`` / ``patch_level`` and TRIDENT's ``patch_size_level0`` attributes, so
their tools read medvl files; :func:`read_features` in turn reads files those tools wrote (``features`` stored
``[N, D]`` or ``[1, N, D]``, attributes on the file or on ``coords``).

Every write goes through :func:`medvl.atomic.atomic_path`: a crash leaves the previous file or none, never a
partial one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_path
from medvl.errors import InputError, reason

__all__ = ["FeatureStore", "TileTable", "read_features"]

#: attributes mirrored on the ``coords`` dataset under the names other tools use
_COORD_ALIASES = {"tile_px": "patch_size", "level": "patch_level"}

#: what h5py raises on a damaged file: OSError when the superblock is bad, but KeyError, RuntimeError or ValueError
#: when an object header, heap or attribute inside it is (the message says which)
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _h5_value(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class TileTable:
    """What one slide's store holds."""

    coords: np.ndarray
    attrs: dict[str, Any]
    features: np.ndarray | None = None
    tissue_fraction: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.coords.shape[0])


class FeatureStore:
    """Read and write one slide's HDF5 store.

    Args:
        path: the ``.h5`` file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def write(self, table: TileTable) -> Path:
        """Write coords, optional features and tissue fractions, and attributes atomically."""
        import h5py

        coords = np.asarray(table.coords, dtype=np.int64).reshape(-1, 2)
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as f:
            ds = f.create_dataset("coords", data=coords)
            for key, value in table.attrs.items():
                f.attrs[key] = _h5_value(value)
                ds.attrs[_COORD_ALIASES.get(key, key)] = _h5_value(value)
            if table.features is not None:
                feats = np.asarray(table.features, dtype=np.float32)
                if feats.shape[0] != coords.shape[0]:
                    raise ValueError(f"{feats.shape[0]} feature rows for {coords.shape[0]} coords")
                f.create_dataset("features", data=feats, chunks=(max(1, min(len(feats), 1024)), feats.shape[1])
                                 if len(feats) else None)
            if table.tissue_fraction is not None:
                f.create_dataset("tissue_fraction", data=np.asarray(table.tissue_fraction, dtype=np.float32))
        return self.path

    def read(self) -> TileTable:
        """Read a medvl, CLAM or TRIDENT file; a clear error when it is not one."""
        import h5py

        if not self.path.is_file():
            raise InputError(self.path, "feature file not found")
        try:
            with h5py.File(self.path, "r") as f:
                if "coords" not in f:
                    raise InputError(self.path, "no 'coords' dataset: not a tile/feature file")
                coords = np.asarray(f["coords"][()])
                attrs = {k: _plain(v) for k, v in f["coords"].attrs.items()}
                attrs.update({k: _plain(v) for k, v in f.attrs.items()})
                feats = None
                if "features" in f:
                    feats = np.asarray(f["features"][()])
                    attrs.update({k: _plain(v) for k, v in f["features"].attrs.items()})
                tissue = np.asarray(f["tissue_fraction"][()]) if "tissue_fraction" in f else None
        except H5_ERRORS as exc:
            raise InputError(self.path, f"not a readable HDF5 file ({reason(exc)})") from None
        return TileTable(_normalise_coords(coords, self.path), _normalise_attrs(attrs),
                         None if feats is None else _normalise_features(feats, len(coords), self.path), tissue)

    def attrs(self) -> dict[str, Any]:
        """The file's attributes (and those of ``coords``) without reading any dataset."""
        import h5py

        if not self.path.is_file():
            raise InputError(self.path, "feature file not found")
        try:
            with h5py.File(self.path, "r") as f:
                attrs = {k: _plain(v) for k, v in f["coords"].attrs.items()} if "coords" in f else {}
                attrs.update({k: _plain(v) for k, v in f.attrs.items()})
        except H5_ERRORS as exc:
            raise InputError(self.path, f"not a readable HDF5 file ({reason(exc)})") from None
        return _normalise_attrs(attrs)

    def has_features(self, encoder: str | None = None) -> bool:
        """Whether extraction already finished here (with ``encoder`` when given): resume skips such slides."""
        import h5py

        if not self.exists():
            return False
        try:
            with h5py.File(self.path, "r") as f:
                if "features" not in f:
                    return False
                return encoder is None or _plain(f.attrs.get("encoder")) == encoder
        except H5_ERRORS:
            return False


def _normalise_coords(coords: np.ndarray, path: Path) -> np.ndarray:
    coords = np.squeeze(coords) if coords.ndim == 3 else coords
    if coords.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InputError(path, f"'coords' has shape {coords.shape}, expected [N, 2]")
    return coords.astype(np.int64)


def _normalise_features(feats: np.ndarray, n: int, path: Path) -> np.ndarray:
    if feats.ndim == 3 and feats.shape[0] == 1:  # some CLAM/TRIDENT writers keep a leading batch axis
        feats = feats[0]
    if feats.ndim != 2 or feats.shape[0] != n:
        raise InputError(path, f"'features' has shape {feats.shape}, expected [{n}, D] to match 'coords'")
    return feats.astype(np.float32, copy=False)


def _normalise_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Fill medvl's attribute names from CLAM/TRIDENT ones where they are derivable."""
    out = {k: (None if v == "none" else v) for k, v in attrs.items()}
    if "tile_px" not in out and "patch_size" in out:
        out["tile_px"] = out["patch_size"]
    if "level" not in out and "patch_level" in out:
        out["level"] = out["patch_level"]
    if "patch_size_level0" not in out and "patch_size" in out:
        ds = out.get("downsample")
        if isinstance(ds, (list, tuple)) and ds:  # CLAM stores the level downsample as (x, y)
            out["patch_size_level0"] = int(round(float(out["patch_size"]) * float(ds[0])))
    return out


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(features [N, D], coords [N, 2] level-0, attrs)`` from a medvl, CLAM or TRIDENT h5 file.

    Raises:
        InputError: the file is missing, unreadable, or holds no features yet (run ``medvl slide extract``).
    """
    table = FeatureStore(path).read()
    if table.features is None:
        raise InputError(path, "holds tile coordinates but no features yet (run: medvl slide extract)")
    return table.features, table.coords, table.attrs
