"""The case collection the diagnosis, retrieval and slide pages work on, embedded in a model's joint space.

Cases come from sources in a table (:data:`SOURCES`): the workspace's slides (mean of their tile embeddings) and the
bundled BreastMNIST test split (real ultrasound images with reference labels; the demo model was trained on its
training split). Every case carries a pseudonymous reference, a thumbnail, its reference diagnosis when known, and a
report excerpt when its data set has report text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvl.apps.catalog import Catalog, pseudonym
from medvl.log import get_logger
from medvl.tasks.vectors import l2_normalise

log = get_logger(__name__)

#: BreastMNIST label -> concept of the knowledge graph (label 0 = malignant: breast cancer (DOID:1612); 1 =
#: normal/benign: benign neoplasm of breast (ICD10CM:D24))
BREASTMNIST_CONCEPTS = {0: "DOID:1612", 1: "ICD10CM:D24"}
BREASTMNIST_NAMES = {0: "malignant", 1: "normal/benign"}
#: the kind of case (modality, stain, organ) behind each label the pages show: neighbours stay within one kind
KINDS = {"H&E slide": {"modality": "slide", "stain": "H&E", "organ": None},
         "breast ultrasound": {"modality": "ultrasound", "stain": None, "organ": "breast"}}


@dataclass
class CaseSet:
    """Cases with joint-space embeddings.

    Attributes:
        refs: pseudonymous case references (what the pages show).
        embeddings: ``[N, D]`` L2-normalised joint-space embeddings.
        kinds: the modality of each case.
        reference: the reference diagnosis of each case (a concept id or a name), None when unknown.
        reports: report text of each case, None when the data set has none.
        thumbnails: RGB ``uint8`` thumbnail per case.
        paths: the file each case comes from (never shown; the slide viewer opens it).
        domains: the input kind of each case (``slide``, ``ultrasound``: :func:`medvl.models.domain.input_domain`),
            what the pages check the model's training domain against.
    """

    refs: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    kinds: list[str] = field(default_factory=list)
    reference: list[str | None] = field(default_factory=list)
    reports: list[str | None] = field(default_factory=list)
    thumbnails: list[np.ndarray] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)

    def extend(self, other: CaseSet) -> CaseSet:
        if len(other) == 0:
            return self
        self.embeddings = other.embeddings if len(self) == 0 else np.concatenate([self.embeddings, other.embeddings])
        for name in ("refs", "kinds", "reference", "reports", "thumbnails", "paths", "domains"):
            getattr(self, name).extend(getattr(other, name))
        return self

    def index_of(self, ref: str) -> int:
        return self.refs.index(ref)


def _upscale(gray: np.ndarray, px: int = 96) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(gray).convert("RGB").resize((px, px), Image.BILINEAR))


def breastmnist_cases(space: Any, catalog: Catalog, split: str = "test") -> CaseSet:
    """The BreastMNIST ``split`` embedded with the model's image tower and its transform (the one its checkpoint
    records: a model trained on BreastMNIST sees exactly its training preprocessing)."""
    import torch

    from medvl.models.transforms import image_transform
    from medvl.resources import bundled

    if "image" not in space.model.modalities:
        return CaseSet()
    with np.load(bundled("breastmnist")) as data:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1).astype(int)
    with torch.inference_mode():
        emb = space.model.encode_image(image_transform(images, space.model.image_transform())).float().numpy()
    emb = l2_normalise(emb)
    n = len(labels)
    return CaseSet(
        refs=[pseudonym(f"breastmnist-{split}-{i}", "us") for i in range(n)], embeddings=emb.astype(np.float32),
        kinds=["breast ultrasound"] * n, reference=[BREASTMNIST_CONCEPTS[int(v)] for v in labels],
        reports=[None] * n, thumbnails=[_upscale(img) for img in images], paths=[None] * n,
        domains=["ultrasound"] * n,
    )


def slide_cases(space: Any, catalog: Catalog) -> CaseSet:
    """One case per workspace slide: the mean of its joint-space tile embeddings; the thumbnail of the slide."""
    from medvl.apps.slideview import slide_tiles
    from medvl.errors import MedvlError
    from medvl.io.slide import open_slide

    out = CaseSet()
    if "image" not in space.model.modalities:
        return out
    for path in catalog.slides:
        try:
            with open_slide(path) as slide:
                tiles = slide_tiles(slide, space, catalog.features_for(path), catalog.cache_dir)
                thumb = slide.thumbnail(160)
        except MedvlError as exc:
            log.warning("slide case skipped: %s", exc)
            continue
        mean = tiles.embeddings.mean(axis=0)
        out.extend(CaseSet(refs=[pseudonym(path, "slide")], embeddings=l2_normalise(mean)[None],
                           kinds=["H&E slide"], reference=[None], reports=[None], thumbnails=[thumb],
                           paths=[str(path)], domains=["slide"]))
    return out


#: case sources, in the order their cases are listed
SOURCES: dict[str, Callable[[Any, Catalog], CaseSet]] = {
    "slides": slide_cases,
    "breastmnist": breastmnist_cases,
}


def load_cases(space: Any, catalog: Catalog, sources: tuple[str, ...] = tuple(SOURCES)) -> CaseSet:
    """All cases of the named sources, embedded in ``space``."""
    cases = CaseSet()
    for name in sources:
        cases.extend(SOURCES[name](space, catalog))
    return cases


def case_index(cases: CaseSet):
    """An exact FAISS index over the cases (:class:`~medvl.tasks.retrieval.RetrievalIndex`)."""
    import pandas as pd

    from medvl.tasks.retrieval.index import IndexConfig, RetrievalIndex

    meta = pd.DataFrame({"case": cases.refs, "kind": cases.kinds})
    for name in ("modality", "stain", "organ"):
        meta[name] = [KINDS.get(k, {}).get(name) for k in cases.kinds]
    return RetrievalIndex.build(cases.embeddings, meta, IndexConfig(kind="flat"), modality="image")


def kind_of(label: str):
    """The :class:`~medvl.tasks.retrieval.kinds.CaseKind` of a case label (``"H&E slide"``, ...)."""
    from medvl.tasks.retrieval.kinds import CaseKind

    return CaseKind(**KINDS.get(label, {"modality": label}))
