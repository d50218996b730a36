"""Adapter between stored embeddings and a model's joint space.

Stored vectors carry a provenance record (:mod:`medvl.provenance`): which weights made them, with which
preprocessing. Before mixing them with a model's text embeddings we check, by content, that they come from this
model: raw tower features must come from the model's own tower (its weights, config and transform) and are projected
here; projected vectors must come from this very model. Anything else, or vectors without a record, is one clear
:class:`~medvl.errors.InputError` naming what differs (``trust_provenance`` accepts vectors without a record, and
says so in the output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.embeddings import EmbeddingSet
from medvl.provenance import ModelPrint, Provenance, require_match
from medvl.tasks.vectors import l2_normalise

#: the parts of the vectors' record a model checks (the input's fingerprint is the caller's business)
SPACE_PARTS = ("model", "preprocessing")


@dataclass
class JointSpace:
    """A loaded model and where it came from (the checkpoint folder or registered name).

    Attributes:
        model: the :class:`~medvl.models.MultiModalModel`.
        source: the resolved checkpoint folder, or the registered name.
        trust_provenance: accept stored vectors that carry no provenance record (noted in :attr:`trusted`).
        strict_domain: refuse inputs of another domain than the model's training data (else a warning).
        trusted: notes on the vectors accepted without a record (recorded in prediction records).
    """

    model: Any
    source: str
    trust_provenance: bool = False
    strict_domain: bool = False
    trusted: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, name_or_dir: str | Path, *, random_weights: bool = False, trust_provenance: bool = False,
             strict_domain: bool = False) -> JointSpace:
        """Load a checkpoint folder, a registered model (whose random weights need ``random_weights``) or a
        vision-language model card whose weights are installed in the model store (``medvl models unpack``)."""
        from medvl.models import create_model
        from medvl.models.factory import require_weights

        source = str(Path(name_or_dir).resolve()) if Path(name_or_dir).is_dir() else str(name_or_dir)
        if _is_card(name_or_dir):
            from medvl.models.card_models import card_joint_model

            return cls(card_joint_model(str(name_or_dir)), source, trust_provenance, strict_domain)
        model = create_model(name_or_dir, random_weights=random_weights).eval()
        require_weights(model, random_weights, f"model {source}")
        return cls(model, source, trust_provenance, strict_domain)

    @property
    def dim(self) -> int:
        return int(self.model.embed_dim)

    def model_print(self, modality: str, projected: bool) -> ModelPrint:
        """The print vectors of ``modality`` made by this model carry (raw tower features or projected ones)."""
        from medvl.models.identity import model_print

        return model_print(self.model, modality, projected)

    def expected(self, modality: str, projected: bool) -> Provenance:
        """The provenance stored vectors must match to be used with this model."""
        prep = None
        if modality == "image":
            prep = self.model.image_transform().to_dict()
        elif modality in self.model.preprocessing:  # a volume tower trained with a CT chain
            prep = self.model.preprocessing[modality]
        return Provenance(model=self.model_print(modality, projected), preprocessing=prep)

    def provenance(self) -> dict[str, Any]:
        """The model part of prediction records made in this space: its weights and config hashes, its random
        towers, and the vectors accepted without a record."""
        ident = self.model.identity
        record: dict[str, Any] = {"model": {
            "source": ident.get("name") or self.source, "weights": ident.get("weights"), "config": ident.get("config"),
            "random_weights": sorted(m for m, r in self.model.random_weights.items() if r)}}
        if self.trusted:
            record["trusted"] = list(self.trusted)
        return record

    def check_domain(self, kind: str, modality: str = "image") -> str | None:
        """Warn (once) when inputs of ``kind`` (``slide``, ``ct``) are not what the ``modality`` tower was trained
        on; the warning text, or ``None``. With :attr:`strict_domain` a mismatch is an error."""
        from medvl.log import warn
        from medvl.models.domain import domain_mismatch, input_domain

        name = self.model.identity.get("name") or self.source
        message = domain_mismatch(self.model.domain(modality), input_domain(kind), str(name), self.strict_domain)
        if message:
            warn(message)
        return message

    def check(self, emb: EmbeddingSet, modality: str, where: str | Path) -> None:
        """Refuse vectors whose provenance does not match this model's ``modality`` tower."""
        if modality not in self.model.modalities:
            raise InputError(where, f"the model has no '{modality}' tower (it has: {', '.join(self.model.modalities)})")
        projected = bool(emb.projected)
        redo = ("embed them again with this model" if modality != "image" else
                f"extract them again: medvl slide extract --encoder {self.source}{' --project' if projected else ''}")
        notes = require_match(emb.provenance, self.expected(modality, projected), where, parts=SPACE_PARTS,
                              trust=self.trust_provenance, redo=redo)
        self.trusted.extend(n for n in notes if n not in self.trusted)

    def to_joint(self, emb: EmbeddingSet, modality: str, origin: str | Path | None = None) -> np.ndarray:
        """Joint-space, normalised vectors from stored embeddings (projecting raw tower features)."""
        import torch

        where = origin if origin is not None else emb.attrs.get("source", "embeddings")
        self.check(emb, modality, where)
        if emb.projected:
            if emb.dim != self.dim:
                raise InputError(where, f"features are {emb.dim}-d but the model's joint space is {self.dim}-d")
            out = emb.embeddings
        else:
            tower = self.model.towers[modality]
            if emb.dim != int(tower.embed_dim):
                raise InputError(where, f"features are {emb.dim}-d but the model's {modality} tower outputs "
                                        f"{int(tower.embed_dim)}-d")
            with torch.inference_mode():
                out = self.model.project(modality, torch.as_tensor(emb.embeddings)).float().numpy()
        return l2_normalise(out)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        from medvl.tasks.zeroshot.classifier import encode_texts

        return encode_texts(self.model, texts)

    def encode_image_file(self, path: str | Path) -> np.ndarray:
        """Embed one image file (PNG/JPEG/...) with the model's image tower and its transform (the one extraction
        and the apps apply)."""
        import torch
        from PIL import Image, UnidentifiedImageError

        from medvl.models.transforms import image_transform

        if "image" not in self.model.modalities:
            raise InputError(path, "the model has no image tower")
        try:  # grayscale files stay one channel (as BreastMNIST's arrays), others are read as RGB (as slide tiles)
            with Image.open(path) as img:
                pixels = np.asarray(img if img.mode == "L" else img.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(path, f"cannot read image ({exc})") from None
        with torch.inference_mode():
            x = image_transform(pixels[None], self.model.image_transform())
            return self.model.encode_image(x).float().numpy()


def _is_card(name_or_dir: str | Path) -> bool:
    """Whether ``name_or_dir`` names a model card (not a checkpoint folder nor a registered model)."""
    from medvl.models import list_models
    from medvl.models.catalogue import find_card

    name = str(name_or_dir)
    return not Path(name).is_dir() and name not in list_models() and find_card(name) is not None
