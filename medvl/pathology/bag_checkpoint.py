"""The ``checkpoint`` slide encoder source: a trained medvl model whose bag tower pools a slide's tile features.

An LV-MAE run (``objective: masked_embedding``) leaves such a model: its bag transformer's class token over all the
tiles of a slide, with their level-0 coordinates, is the slide embedding. Any checkpoint with a ``bag`` tower works
(a bag-Cox or a slide-report model too); the raw tower output is returned (not the joint-space projection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.models.checkpoint import is_checkpoint, read_checkpoint_config
from medvl.pathology.slide_encoders import SlideEncoder, SlideEncoderSpec, register_slide_source

__all__ = ["CheckpointSource"]


@register_slide_source("checkpoint")
class CheckpointSource:
    """A medvl checkpoint folder with a bag tower."""

    def matches(self, spec: SlideEncoderSpec) -> bool:
        return Path(spec.name).is_dir() and is_checkpoint(spec.name)

    def load(self, spec: SlideEncoderSpec) -> SlideEncoder:
        import torch

        from medvl.models import create_model

        folder = Path(spec.name).resolve()
        towers = read_checkpoint_config(folder)["model"]["towers"]
        if "bag" not in towers:
            raise InputError(folder, f"the checkpoint has no bag tower (it has: {', '.join(towers)})")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if spec.device == "auto" else spec.device
        tower = create_model(folder).towers["bag"].to(device).eval()
        in_dim, pos_dim = int(tower.cfg.in_dim), int(getattr(tower.cfg, "pos_dim", 0))

        def encode(features: np.ndarray, coords: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
            bag = {"features": torch.as_tensor(features, dtype=torch.float32, device=device)[None]}
            if pos_dim:  # the positions the tower was trained with (x, y of tiles; the slice index of volumes)
                bag["coords"] = torch.as_tensor(coords[:, :pos_dim], dtype=torch.float32, device=device)[None]
            with torch.inference_mode():
                return tower.encode(bag)[0].float().cpu().numpy()

        return SlideEncoder(str(folder), int(tower.embed_dim), in_dim, encode)
