"""WebDataset shards as training data (``webdataset``): image/text pairs streamed from ``.tar`` shards.

The open_clip convention: each sample is ``key.jpg`` / ``key.png`` (the image) and ``key.txt`` (its caption),
optionally ``key.json`` (``{"labels": [...]}``). When the dataset is built every shard is listed once: each sample
must have its image and text (a missing member is an error naming the shard and the sample key; ``skip_bad`` leaves
the sample out), captions are tagged into concept groups exactly as the ``manifest`` dataset does
(:mod:`medvl.train.data.concepts`), and the sample counts fix the length of an epoch.

Training streams the shards with the ``webdataset`` package: the shard order is shuffled per epoch from the seed,
shards are split across DDP ranks (``shards[rank::world]``) and DataLoader workers (``split_by_worker``), samples go
through a seeded shuffle buffer, and each rank yields the same number of full local batches per epoch. Everything
is a function of (seed, epoch), so a resumed run skips the batches it already trained on and continues at the right
sample. The engine uses :meth:`ShardPairs.stream` instead of a sampler.
"""

from __future__ import annotations

import io
import random
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError, InputError, require
from medvl.models.domain import DataDomain
from medvl.models.transforms import ImageTransformConfig, image_transform
from medvl.train.data.concepts import ConceptOptions, ConceptTags, build_groups
from medvl.train.data.registry import collate, register_dataset
from medvl.train.data.rows import MAX_SHOWN

__all__ = ["ShardOptions", "ShardPairs"]

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")


@dataclass
class ShardOptions(Config):
    """WebDataset shards of image/caption pairs.

    Attributes:
        shards: ``.tar`` files, folders of them, or brace patterns (``data/shard-{000..009}.tar``); relative to
            ``root`` when set (``medvl train`` sets the config file's folder).
        root: see ``shards``.
        image: the image transform (an ``ImageTransformConfig`` mapping).
        domain: the kind of data recorded in the checkpoint.
        concepts: how captions become concept groups (see the ``manifest`` dataset).
        shuffle_buffer: samples in the shuffle buffer.
        workers: DataLoader worker processes that decode samples (0: in the training process).
        augment: random horizontal flips.
        skip_bad: leave samples with a missing member out instead of refusing the shards.
    """

    shards: list[str]
    root: Path | None = None
    image: dict[str, Any] = field(default_factory=dict)
    domain: str = "image"
    concepts: ConceptOptions = field(default_factory=ConceptOptions)
    shuffle_buffer: int = 1000
    workers: int = 0
    augment: bool = True
    skip_bad: bool = False

    def shard_paths(self) -> list[Path]:
        from braceexpand import braceexpand

        out: list[Path] = []
        for pattern in self.shards:
            for name in braceexpand(pattern):
                path = Path(name).expanduser()
                path = path if path.is_absolute() or self.root is None else Path(self.root) / path
                out += sorted(path.glob("*.tar")) if path.is_dir() else [path]
        if not out:
            raise ConfigError("ShardOptions.shards: no shard given")
        return out


def _list_shard(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``[(key, caption)]`` of the complete samples of one shard and the problems of the others."""
    if not path.is_file():
        raise InputError(path, "shard not found")
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                if info.isfile() and "." in Path(info.name).name:
                    key, ext = info.name.split(".", 1)
                    members.setdefault(key, {})[ext.lower()] = info
            good, problems = [], []
            for key, exts in members.items():
                missing = [m for m, ok in (("image", any(e in exts for e in IMAGE_MEMBERS)), ("txt", "txt" in exts))
                           if not ok]
                if missing:
                    problems.append(f"shard '{path.name}', sample '{key}': missing member "
                                    f"'{missing[0]}' (has: {', '.join(sorted(exts))})")
                    continue
                text = tar.extractfile(exts["txt"]).read().decode("utf-8").strip()
                if not text:
                    problems.append(f"shard '{path.name}', sample '{key}': empty text")
                    continue
                good.append((key, text))
    except tarfile.TarError as exc:
        raise InputError(path, f"not a readable tar shard ({exc})") from None
    return good, problems


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L" if img.mode in ("L", "LA", "1") else "RGB"))


@register_dataset("webdataset", ShardOptions)
class ShardPairs:
    """Image/caption pairs streamed from WebDataset shards, grouped by the concepts of the captions."""

    fields = {"image": "image", "text": "text"}

    def __init__(self, opts: ShardOptions):
        require("webdataset", "train", "WebDataset shards")
        self.opts = opts
        self.transform = ImageTransformConfig.from_dict(dict(opts.image), source="webdataset image")
        self.preprocessing = {"image": self.transform}
        self.domains = {"image": DataDomain(opts.domain, channels=self.transform.channels)}
        self.shards = opts.shard_paths()
        self.samples: list[tuple[int, str, str]] = []  # (shard, key, caption)
        self.problems: list[str] = []
        self.per_shard: list[int] = []
        for s, path in enumerate(self.shards):
            good, bad = _list_shard(path)
            self.samples += [(s, k, t) for k, t in good]
            self.per_shard.append(len(good))
            self.problems += bad
        if self.problems and not opts.skip_bad:
            shown = "; ".join(self.problems[:MAX_SHOWN])
            raise InputError(self.shards[0].parent, f"{len(self.problems)} bad sample(s): {shown} "
                                                    "(--skip-bad trains on the others)")
        if not self.samples:
            raise InputError(self.shards[0].parent, "no complete sample in the shards; no run started")
        tags = ConceptTags(opts.concepts)
        concepts = [tags.asserted(t) for _, _, t in self.samples]
        self.tagged = sum(bool(c) for c in concepts)
        table = self.groups = build_groups(concepts, list(range(1, len(self.samples) + 1)), tags, "own-group")
        self.group_names, self.group_ids = table.group_names, table.group_ids
        self.group_relatives = torch.as_tensor(table.group_relatives)
        self.group_of = {(s, k): g for (s, k, _), g in zip(self.samples, table.group_ids, strict=True)}

    def __len__(self) -> int:
        return len(self.samples)

    def texts(self) -> list[str]:
        return list(dict.fromkeys(t for _, _, t in self.samples))

    def item(self, index: int, rng: torch.Generator | None) -> dict[str, Any]:
        raise ConfigError("dataset 'webdataset' is streamed (the trainer reads it through stream())")

    # ------------------------------------------------------------------ streaming
    def _sample(self, shard_of: dict[str, int], sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        shard = shard_of[sample["__url__"]]
        data = next(sample[e] for e in IMAGE_MEMBERS if e in sample)
        x = image_transform(_decode(data)[None], self.transform)[0]
        flip = random.Random(zlib.crc32(f"{shard}/{key}".encode()) ^ self._epoch_seed).random() < 0.5
        if self.opts.augment and flip:
            x = x.flip(-1)
        return {"image": x, "text": sample["txt"].decode("utf-8").strip(), "group": self.group_of[(shard, key)]}

    def _order(self, seed: int, epoch: int) -> list[int]:
        order = list(range(len(self.shards)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        return order

    def batches_per_epoch(self, local_batch: int, world: int, seed: int, epoch: int) -> int:
        """Full local batches every rank can make in ``epoch`` (the same on all ranks)."""
        order = self._order(seed, epoch)
        workers = max(self.opts.workers, 1)
        counts = []
        for rank in range(world):
            mine = order[rank::world]
            counts.append(sum(sum(self.per_shard[s] for s in mine[w::workers]) // local_batch
                              for w in range(workers)))
        return min(counts)

    def _loader(self, shards: list[int], local_batch: int, seed: int) -> Any:
        wds = require("webdataset", "train", "WebDataset shards")
        urls = [str(self.shards[s]) for s in shards]
        shard_of = {u: s for u, s in zip(urls, shards, strict=True)}
        pipeline = (wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=wds.split_by_worker,
                                   empty_check=False)
                    .shuffle(self.opts.shuffle_buffer, rng=random.Random(seed))
                    .map(lambda s: self._sample(shard_of, s))
                    .batched(local_batch, collation_fn=collate, partial=False))
        return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=self.opts.workers)

    def stream(self, epoch: int, position: int, local_batch: int, rank: int, world: int, seed: int):
        """Yield ``(epoch, batch_in_epoch, batch)`` from ``epoch`` and batch ``position`` on, forever."""
        while True:
            n = self.batches_per_epoch(local_batch, world, seed, epoch)
            if n == 0:
                raise ConfigError(f"dataset 'webdataset': fewer samples per rank and worker than one batch "
                                  f"({local_batch})")
            self._epoch_seed = seed * 7919 + epoch
            mine = self._order(seed, epoch)[rank::world]
            for b, batch in enumerate(self._loader(mine, local_batch, self._epoch_seed + rank)):
                if b >= n:
                    break
                if b >= position:
                    yield epoch, b, batch
            epoch, position = epoch + 1, 0

    def counts(self) -> dict[str, Any]:
        """Shards, samples, tagged samples, groups, items per concept, skipped samples."""
        return {"modality": "image", "split": "shards", "shards": len(self.shards), "rows": len(self.samples),
                "items": len(self.samples), "tagged_rows": self.tagged, "dropped_untagged": 0,
                "groups": len(self.group_names), "concept_groups": self.groups.concept_groups,
                "items_per_concept": {c: {"name": c, "items": n} for c, n in self.groups.items_per_concept.items()},
                "skipped_rows": len(self.problems)}

    def write_report(self, out: Path, stage: str) -> dict[str, Any]:
        from medvl.train.data.manifest import write_report
        from medvl.train.data.rows import RowProblem

        return write_report(out, stage, self.counts(), [RowProblem(None, None, p) for p in self.problems])
