"""Adapter between stored embeddings and a model's joint space.

Feature files record the encoder that produced them (``encoder`` attribute) and whether they are already projected.
Before mixing them with a model's text embeddings we check that they come from this model: raw tower features must
match the model's image tower (name and width) and are projected here; projected features must come from this very
checkpoint and have the joint width. Anything else is one clear :class:`~medvl.errors.InputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.embeddings import EmbeddingSet
from medvl.tasks.vectors import l2_normalise


@dataclass
class JointSpace:
    """A loaded model and where it came from (the checkpoint folder or registered name)."""

    model: Any
    source: str

    @classmethod
    def load(cls, name_or_dir: str | Path) -> JointSpace:
        from medvl.models import create_model

        source = str(Path(name_or_dir).resolve()) if Path(name_or_dir).is_dir() else str(name_or_dir)
        model = create_model(name_or_dir).eval()
        return cls(model, source)

    @property
    def dim(self) -> int:
        return int(self.model.embed_dim)

    def tower_names(self, modality: str) -> set[str]:
        """Names a feature file may record for raw features of this model's ``modality`` tower."""
        spec = self.model.config.towers.get(modality)
        if spec is None:
            return set()
        names = {spec.name, self.source}
        if spec.options.get("model_name"):
            names.add(f"{spec.name}:{spec.options['model_name']}")
        return names

    def to_joint(self, emb: EmbeddingSet, modality: str, origin: str | Path | None = None) -> np.ndarray:
        """Joint-space, normalised vectors from stored embeddings (projecting raw tower features)."""
        import torch

        where = origin if origin is not None else "embeddings"
        if modality not in self.model.modalities:
            raise InputError(where, f"the model has no '{modality}' tower (it has: {', '.join(self.model.modalities)})")
        if emb.projected:
            if emb.encoder and emb.encoder != self.source:
                raise InputError(where, f"features were projected by '{emb.encoder}', not by the model {self.source}")
            if emb.dim != self.dim:
                raise InputError(where, f"features are {emb.dim}-d but the model's joint space is {self.dim}-d")
            out = emb.embeddings
        else:
            tower = self.model.towers[modality]
            expected = self.tower_names(modality)
            if emb.encoder and emb.encoder not in expected:
                spec = self.model.config.towers[modality]
                label = f"{spec.name}:{spec.options['model_name']}" if spec.options.get("model_name") else spec.name
                raise InputError(where, f"features come from encoder '{emb.encoder}' but the model's {modality} tower "
                                        f"is '{label}'")
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
        """Embed one image file (PNG/JPEG/...) with the model's image tower and its preprocessing."""
        import torch
        from PIL import Image, UnidentifiedImageError

        tower = self.model.towers["image"] if "image" in self.model.modalities else None
        if tower is None:
            raise InputError(path, "the model has no image tower")
        try:
            img = Image.open(path).convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(path, f"cannot read image ({exc})") from None
        cfg = getattr(tower, "data_config", None) or {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406),
                                                      "std": (0.229, 0.224, 0.225)}
        _, h, w = cfg["input_size"]
        arr = np.asarray(img.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
        x = (torch.from_numpy(arr).permute(2, 0, 1) - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(
            cfg["std"]).view(3, 1, 1)
        with torch.inference_mode():
            return self.model.encode_image(x.unsqueeze(0).float()).float().numpy()
