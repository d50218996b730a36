"""BreastMNIST image/caption pairs with knowledge groups, and the graph captions of a class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from medvl.config import Config
from medvl.errors import InputError
from medvl.models.domain import DataDomain
from medvl.models.transforms import grayscale_transform, image_transform
from medvl.train.data.registry import register_dataset

__all__ = ["ULTRASOUND_TEMPLATES", "BreastMNISTOptions", "BreastMNISTPairs", "class_captions"]


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
        default_factory=lambda: {"0": ["DOID:1612"], "1": ["ICD10CM:D24", "DOID:1618"]}
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
    #: the domain of the images, saved in the checkpoint (inference on other images warns)
    domains: ClassVar[dict[str, DataDomain]] = {"image": DataDomain("ultrasound", channels="grayscale")}

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
        #: the one image transform, as a config of its own: saved in the checkpoint, applied again at inference
        self.preprocessing = {"image": grayscale_transform(opts.image_size)}
        self.images = image_transform(images, self.preprocessing["image"])
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
