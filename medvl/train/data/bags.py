"""Bag datasets: each item is a bag of embeddings with positions (a slide's tiles, a volume's slices, an image's
patches), optionally with a label and a survival outcome.

``bags``: a folder of feature files (``<id>.h5`` from ``medvl slide extract``, CLAM or TRIDENT; slice embeddings of
volumes have coordinates ``(slice, 0)``), joined with an optional table by id (``slide_id`` or ``case_id``). Every
file must have the same feature width; every table row must have its file. ``breastmnist-bags``: the bundled
BreastMNIST images cut into a grid of square patches, each patch's pixels one embedding (real images, real labels).

An item is ``{"bag": {"features": [n, D], "coords": [n, P]}, "label", "time", "event"}``; at most ``max_items`` items
of a bag are drawn per sample (from the sample's seeded generator), so long slides fit a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.log import get_logger
from medvl.train.data.registry import pad_bags, register_dataset
from medvl.train.data.tables import select_rows

__all__ = ["BagFolder", "BagFolderOptions", "BreastMNISTBagOptions", "BreastMNISTBags", "pad_bags"]

log = get_logger(__name__)


def _subsample(n: int, max_items: int | None, rng: torch.Generator) -> torch.Tensor | None:
    if not max_items or n <= max_items:
        return None
    return torch.randperm(n, generator=rng)[:max_items].sort().values


# ------------------------------------------------------------------------------------------------ feature folders
@dataclass
class BagFolderOptions(Config):
    """A folder of bag feature files and, optionally, a table of outcomes.

    Attributes:
        features: folder of ``.h5`` feature files (one bag each; the file stem is its id).
        table: CSV/TSV/Parquet with one row per bag (omitted: every file, no outcome).
        id_column: the table column naming the file stem (default ``slide_id`` when present, else ``case_id``).
        time / event: survival columns (``event_is_censoring``: the column holds 1 for censored rows).
        label: a class label column.
        split / split_column: keep only rows of this split (``exclude_split``: every other row).
        max_items: draw at most this many items of a bag per sample.
        pos_dim: coordinates used: 2 (tile x, y), 1 (the first: slice index) or 0 (none).
    """

    features: str
    table: str | None = None
    id_column: str | None = None
    time: str | None = None
    event: str | None = None
    event_is_censoring: bool = False
    label: str | None = None
    split: str | None = None
    exclude_split: str | None = None
    split_column: str = "split"
    max_items: int | None = 512
    pos_dim: Literal[0, 1, 2] = 2

    def validate(self) -> None:
        if (self.time is None) != (self.event is None):
            raise ConfigError("BagFolderOptions: give both 'time' and 'event' (or neither)")
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError("BagFolderOptions.max_items: must be >= 1")


def _read_bag(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from medvl.io.features import read_features

    feats, coords, _ = read_features(path)
    return feats, coords


def _rows(opts: BagFolderOptions, files: dict[str, Path]):
    """The table's rows (filtered by split) and each row's file, or every file when there is no table."""
    if opts.table is None:
        if opts.time or opts.label:
            raise ConfigError("dataset 'bags': outcomes ('time', 'event', 'label') need a 'table'")
        return None, sorted(files)
    from medvl.tasks.survival.tables import read_table

    df = read_table(opts.table)
    id_col = opts.id_column or ("slide_id" if "slide_id" in df.columns else "case_id")
    df = select_rows(df, opts.table, [c for c in (id_col, opts.time, opts.event, opts.label) if c],
                     opts.split_column, opts.split, opts.exclude_split)
    if df.empty:
        raise InputError(opts.table, f"no rows left after the split filter on column '{opts.split_column}'")
    df = df.drop_duplicates(subset=[id_col]).reset_index(drop=True)
    ids = df[id_col].astype(str).tolist()
    absent = [i for i in ids if i not in files]
    if absent:
        raise InputError(opts.table, f"{len(absent)} of {len(ids)} id(s) in column '{id_col}' have no feature file in "
                                     f"{opts.features} (first: {', '.join(absent[:3])})")
    return df, ids


class _Outcomes:
    """Survival outcome and labels of a table's rows (checked as ``medvl survival`` checks them)."""

    def __init__(self, opts: BagFolderOptions, df):
        self.time = self.event = self.label = None
        if df is None:
            return
        if opts.time is not None:
            from medvl.tasks.survival.tables import check_event, check_time

            self.time = check_time(Path(opts.table), df[opts.time], opts.time)
            self.event = check_event(Path(opts.table), df[opts.event], opts.event, opts.event_is_censoring)
        if opts.label is not None:
            self.classes, self.label = np.unique(df[opts.label].astype(str), return_inverse=True)


@register_dataset("bags", BagFolderOptions)
class BagFolder:
    """Bags of tile (or slice) embeddings from feature files, with optional labels and survival outcomes."""

    fields: ClassVar[dict[str, str]] = {"bag": "bag"}

    def __init__(self, opts: BagFolderOptions):
        folder = Path(opts.features)
        if not folder.is_dir():
            raise InputError(folder, "not a folder of feature files")
        files = {p.stem: p for p in sorted(folder.glob("*.h5"))}
        if not files:
            raise InputError(folder, "no .h5 feature files")
        self.opts = opts
        df, self.ids = _rows(opts, files)
        self.bags = [_read_bag(files[i]) for i in self.ids]
        dims = {f.shape[1] for f, _ in self.bags}
        if len(dims) > 1:
            first = self.bags[0][0].shape[1]
            odd = next(i for i, (f, _) in zip(self.ids, self.bags, strict=True) if f.shape[1] != first)
            raise InputError(files[odd], f"features are {self.bags[self.ids.index(odd)][0].shape[1]}-d but "
                                         f"{files[self.ids[0]].name} has {first}-d: bags of mixed dimension")
        self.dim = dims.pop()
        out = _Outcomes(opts, df)
        self.time, self.event, self.labels = out.time, out.event, out.label
        if self.labels is not None:
            self.group_ids = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.ids)

    def texts(self) -> list[str]:
        return []

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        feats, coords = self.bags[index]
        pick = _subsample(len(feats), self.opts.max_items, rng)
        f, c = torch.from_numpy(feats), torch.from_numpy(coords[:, : max(1, self.opts.pos_dim)].astype(np.float32))
        if pick is not None:
            f, c = f[pick], c[pick]
        out: dict[str, Any] = {"bag": {"features": f, "coords": c}}
        if self.time is not None:
            out["time"] = torch.tensor(float(self.time[index]))
            out["event"] = bool(self.event[index])
        if self.labels is not None:
            out["label"] = int(self.labels[index])
        return out


# ------------------------------------------------------------------------------------------------ BreastMNIST
@dataclass
class BreastMNISTBagOptions(Config):
    """BreastMNIST images as bags of patches.

    Attributes:
        path: the ``.npz`` (default: the bundled file).
        split: ``train``, ``val`` or ``test``.
        patch: patch side in pixels (28 must divide by it); a patch's pixels (scaled to 0..1) are its embedding.
        limit: use only the first ``limit`` images.
    """

    path: str | None = None
    split: Literal["train", "val", "test"] = "train"
    patch: int = 4
    limit: int | None = None

    def validate(self) -> None:
        if self.patch < 1 or 28 % self.patch:
            raise ConfigError("BreastMNISTBagOptions.patch: must divide 28")


def breastmnist_patches(images: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """``[B, 28, 28]`` images -> patch embeddings ``[B, n, patch^2]`` (0..1) and their pixel coords ``[n, 2]``."""
    b, h, w = images.shape
    g = h // patch
    x = images.reshape(b, g, patch, g, patch).transpose(0, 1, 3, 2, 4).reshape(b, g * g, patch * patch)
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) * patch
    return (x / 255.0).astype(np.float32), coords


@register_dataset("breastmnist-bags", BreastMNISTBagOptions)
class BreastMNISTBags:
    """Real BreastMNIST images cut into a grid of patches (label 0 = malignant, 1 = normal/benign)."""

    fields: ClassVar[dict[str, str]] = {"bag": "bag"}

    def __init__(self, opts: BreastMNISTBagOptions):
        from medvl.resources import bundled

        path = opts.path or bundled("breastmnist")
        try:
            with np.load(path) as data:
                images, labels = data[f"{opts.split}_images"], data[f"{opts.split}_labels"].reshape(-1)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(path, f"not a BreastMNIST npz with a '{opts.split}' split ({exc})") from None
        if opts.limit:
            images, labels = images[: opts.limit], labels[: opts.limit]
        self.patches, self.coords = breastmnist_patches(images, opts.patch)
        self.labels = labels.astype(np.int64)
        self.group_ids = self.labels.tolist()
        self.dim = self.patches.shape[2]

    def __len__(self) -> int:
        return len(self.labels)

    def texts(self) -> list[str]:
        return []

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        return {"bag": {"features": torch.from_numpy(self.patches[index]), "coords": torch.from_numpy(self.coords)},
                "label": int(self.labels[index])}
