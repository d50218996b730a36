"""Training datasets (a registry) and the collate function.

A dataset is indexable; ``item(index, rng)`` returns a dict of fields (``image``, ``text``, ``text2``, ``group``,
``label``, ...). ``rng`` is a generator seeded from (seed, epoch, index), so augmentation is reproducible and a
resumed run draws exactly what an uninterrupted run would. ``fields`` maps each input field to its modality.
Datasets with knowledge groups expose ``group_ids`` (one per item), ``group_relatives`` (``[G, G]`` bool) and
``group_names``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.models.transforms import preprocess_grayscale
from medvl.registry import Registry

__all__ = [
    "DATASETS",
    "BreastMNISTOptions",
    "BreastMNISTPairs",
    "GraphGroupOptions",
    "GraphGroupPairs",
    "build_dataset",
    "class_captions",
    "collate",
    "pad_bags",
    "list_datasets",
    "register_dataset",
]

#: name -> (typed options class, dataset class)
DATASETS: Registry[tuple[type[Config], Callable[..., Any]]] = Registry("dataset", builtins=("medvl.train.bags",
                                                                                                  "medvl.train.lexical"))


def register_dataset(name: str, options: type[Config]):
    """Register a dataset class built from a typed options config."""

    def decorator(cls):
        DATASETS.add(name, (options, cls))
        return cls

    return decorator


def list_datasets() -> list[str]:
    return DATASETS.names()


def build_dataset(name: str, options: dict[str, Any]) -> Any:
    opt_cls, cls = DATASETS.get(name)
    try:
        opts = opt_cls.from_dict(options)
    except ConfigError as exc:
        raise ConfigError(f"dataset '{name}': {exc}") from None
    return cls(opts)


def pad_bags(bags: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Bags of different lengths (mappings of ``[n, ...]`` tensors, with ``features``) padded to the longest, plus
    ``mask [B, N]`` (True = a real item)."""
    n = max(int(b["features"].shape[0]) for b in bags)
    out: dict[str, torch.Tensor] = {}
    for key in bags[0]:
        first = bags[0][key]
        padded = first.new_zeros((len(bags), n, *first.shape[1:]))
        for i, b in enumerate(bags):
            padded[i, : len(b[key])] = b[key]
        out[key] = padded
    lengths = torch.tensor([len(b["features"]) for b in bags])
    out["mask"] = torch.arange(n)[None, :] < lengths[:, None]
    return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, pad bags (mappings with ``features``), keep strings as lists, turn ints into a LongTensor."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], dict) and "features" in values[0]:
            out[key] = pad_bags(values)
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, np.integer)):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        else:
            out[key] = values
    return out


# ------------------------------------------------------------------------------------------------ captions
ULTRASOUND_TEMPLATES = (
    "an ultrasound image of {}",
    "breast ultrasound showing {}",
    "a sonogram of {}",
    "{}",
)


def class_captions(graph: Any, concept_ids: list[str], templates: list[str], definitions: bool = True) -> list[str]:
    """Captions of one class from the knowledge graph: names and exact synonyms through templates, and definitions."""
    captions: list[str] = []
    for cid, prompts in graph.prompts(concept_ids, templates).items():
        captions.extend(prompts)
        if definitions:
            concept = graph.concept(cid)
            captions.extend(f"{concept.name}: {d}" for d in concept.definitions)
    return list(dict.fromkeys(captions))


def _augment(img: torch.Tensor, rng: torch.Generator, shift: int) -> torch.Tensor:
    if torch.rand((), generator=rng) < 0.5:
        img = img.flip(-1)
    if shift:
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=rng))
        padded = F.pad(img.unsqueeze(0), (shift, shift, shift, shift), mode="reflect").squeeze(0)
        h, w = img.shape[-2:]
        img = padded[:, shift + dy:shift + dy + h, shift + dx:shift + dx + w]
    return img


# ------------------------------------------------------------------------------------------------ BreastMNIST
@dataclass
class BreastMNISTOptions(Config):
    """BreastMNIST image/caption pairs with knowledge groups (one group per class).

    Attributes:
        path: the ``.npz`` (default: the bundled file).
        split: ``train``, ``val`` or ``test``.
        image_size: side after resizing (28 keeps the native resolution).
        limit: use only the first ``limit`` images (tiny test recipes).
        augment: random flips and shifts (drawn once per sample from a seeded generator).
        classes: label -> concept ids whose names, synonyms and definitions caption it. Label 0 = malignant,
            1 = normal/benign.
        extra_captions: label -> curated captions added to the graph's (the dataset's normal class has no concept).
        templates: caption templates with ``{}``.
        second_view: also return ``image2``, a second augmentation (intra-modal term).
    """

    path: str | None = None
    split: Literal["train", "val", "test"] = "train"
    image_size: int = 28
    limit: int | None = None
    augment: bool = True
    shift: int = 2
    classes: dict[str, list[str]] = field(
        default_factory=lambda: {"0": ["DOID:1612"], "1": ["DOID:0060085", "DOID:1618"]}
    )
    extra_captions: dict[str, list[str]] = field(
        default_factory=lambda: {"1": ["an ultrasound image of normal breast tissue",
                                       "breast ultrasound with no malignant lesion"]}
    )
    templates: list[str] = field(default_factory=lambda: list(ULTRASOUND_TEMPLATES))
    second_view: bool = False


@register_dataset("breastmnist", BreastMNISTOptions)
class BreastMNISTPairs:
    """Images of the bundled BreastMNIST with captions from the disease knowledge graph."""

    fields: ClassVar[dict[str, str]] = {"image": "image", "image2": "image", "text": "text"}

    def __init__(self, opts: BreastMNISTOptions):
        from medvl.knowledge import default_graph
        from medvl.resources import bundled

        self.opts = opts
        path = opts.path or bundled("breastmnist")
        try:
            with np.load(path) as data:
                images, labels = data[f"{opts.split}_images"], data[f"{opts.split}_labels"].reshape(-1)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(path, f"not a BreastMNIST npz with a '{opts.split}' split ({exc})") from None
        if opts.limit:
            images, labels = images[: opts.limit], labels[: opts.limit]
        self.images = preprocess_grayscale(images, opts.image_size)
        self.labels = torch.as_tensor(labels.astype(np.int64))
        graph = default_graph()
        self.group_names = sorted(opts.classes, key=int)
        self.class_concepts = [opts.classes[k] for k in self.group_names]
        self.captions = [
            class_captions(graph, opts.classes[k], opts.templates) + list(opts.extra_captions.get(k, []))
            for k in self.group_names
        ]
        all_ids = [ids[0] for ids in self.class_concepts]
        self.group_relatives = torch.as_tensor(graph.relatives_mask(all_ids))
        self.group_ids = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def texts(self) -> list[str]:
        return [c for caps in self.captions for c in caps]

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        label = int(self.labels[index])
        img = self.images[index]
        caps = self.captions[label]
        out = {
            "image": _augment(img, rng, self.opts.shift) if self.opts.augment else img,
            "text": caps[int(torch.randint(len(caps), (), generator=rng))],
            "group": label,
            "label": label,
        }
        if self.opts.second_view:
            out["image2"] = _augment(img, rng, self.opts.shift)
        return out


# ------------------------------------------------------------------------------------------------ graph groups
@dataclass
class GraphGroupOptions(Config):
    """Text/text pairs from KEEP semantic groups: two texts of one concept are a positive pair.

    Attributes:
        root: use this concept and its descendants (e.g. ``DOID:1612``); ``ids`` lists concepts explicitly instead.
        ids: explicit concept ids.
        max_concepts: keep at most this many concepts (sorted by id; tiny recipes).
    """

    root: str | None = "DOID:1612"
    ids: list[str] | None = None
    max_concepts: int | None = None


@register_dataset("graph-groups", GraphGroupOptions)
class GraphGroupPairs:
    """Stage-1 text data of the two-stage recipe: the knowledge-encoder pairs from the disease graph."""

    fields: ClassVar[dict[str, str]] = {"text": "text", "text2": "text"}

    def __init__(self, opts: GraphGroupOptions):
        from medvl.knowledge import default_graph

        graph = default_graph()
        if opts.ids:
            ids = [graph.resolve(i) for i in opts.ids]
        elif opts.root:
            ids = sorted({graph.resolve(opts.root), *graph.descendants(opts.root)})
        else:
            raise ConfigError("dataset 'graph-groups': give 'root' or 'ids'")
        ids = ids[: opts.max_concepts] if opts.max_concepts else ids
        groups = [g for g in graph.groups(ids) if len(g.texts) >= 2]
        if len(groups) < 2:
            raise ConfigError("dataset 'graph-groups': fewer than two concepts with two or more texts")
        self.group_names = [g.concept_id for g in groups]
        self.texts_by_group = [list(g.texts) for g in groups]
        # one item per text: anchors cycle through every text of every group
        self.index = [(gi, ti) for gi, texts in enumerate(self.texts_by_group) for ti in range(len(texts))]
        self.group_ids = [gi for gi, _ in self.index]
        self.group_relatives = torch.as_tensor(graph.relatives_mask(self.group_names))

    def __len__(self) -> int:
        return len(self.index)

    def texts(self) -> list[str]:
        return [t for texts in self.texts_by_group for t in texts]

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        gi, ti = self.index[index]
        texts = self.texts_by_group[gi]
        other = int(torch.randint(len(texts) - 1, (), generator=rng))
        other = other + 1 if other >= ti else other
        return {"text": texts[ti], "text2": texts[other], "group": gi, "label": gi}
