"""The ``checkpoint`` slide encoder source: a trained medvl model whose bag tower pools a slide's tile features.

An LV-MAE run (``objective: masked_embedding``) leaves such a model: its bag transformer's class token over all the
tiles of a slide, with their level-0 coordinates, is the slide embedding. Any checkpoint with a ``bag`` tower works
(a bag-Cox or a slide-report model too); the raw tower output is returned (not the joint-space projection). The
checkpoint's weights are its own (``spec.weights`` does not apply) and load with ``weights_only`` safety.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import ConfigError, InputError
from medvl.models.checkpoint import is_checkpoint, read_checkpoint_config
from medvl.pathology.slide_encoders import SlideEncoder, SlideEncoderSpec, SlideRequirements, register_slide_source

__all__ = ["CheckpointSource"]


@register_slide_source("checkpoint")
class CheckpointSource:
    """A medvl checkpoint folder with a bag tower."""

    def matches(self, spec: SlideEncoderSpec) -> bool:
        return Path(spec.name).is_dir() and is_checkpoint(spec.name)

    def load(self, spec: SlideEncoderSpec) -> SlideEncoder:
        import torch

        from medvl.models import create_model
        from medvl.pathology.extract import resolve_device

        folder = Path(spec.name).resolve()
        if spec.weights is not None:
            raise ConfigError(f"slide encoder '{folder}': a checkpoint carries its own weights (drop --weights)")
        towers = read_checkpoint_config(folder)["model"]["towers"]
        if "bag" not in towers:
            raise InputError(folder, f"the checkpoint has no bag tower (it has: {', '.join(towers)})")
        device = resolve_device(spec.device)
        tower = create_model(folder).towers["bag"].to(device).eval()
        in_dim, pos_dim = int(tower.cfg.in_dim), int(getattr(tower.cfg, "pos_dim", 0))

        def encode(features: np.ndarray, grid: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
            bag = {"features": torch.as_tensor(features, dtype=torch.float32, device=device)[None]}
            if pos_dim:  # the positions the tower was trained with (level-0 x, y of tiles; the slice of volumes)
                coords = np.asarray(attrs["_coords"], dtype=np.float32)[:, :pos_dim]
                bag["coords"] = torch.as_tensor(coords, device=device)[None]
            with torch.inference_mode():
                return tower.encode(bag)[0].float().cpu().numpy()

        needs = SlideRequirements(feature_dim=in_dim)
        return SlideEncoder(str(folder), int(tower.embed_dim), needs, encode, title=folder.name)
