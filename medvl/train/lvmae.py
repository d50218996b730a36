"""``objective: masked_embedding`` (LV-MAE): slide- or volume-level self-supervision over bags of embeddings.

Each step masks a high fraction of every bag's items (:func:`medvl.models.lvmae.mask_bag`: square blocks of the tile
grid, runs of slices, or at random), encodes the visible items with the model's bag transformer (2-D positions from
the tile coordinates, 1-D for slices), and a small decoder (the objective's ``head``, not part of the saved model)
rebuilds the masked items' embeddings. Only the bag tower and the decoder train; afterwards the tower's pooled output
is a label-free slide embedding (``medvl slide embed --encoder RUN/model``).

Options (``objective_options`` of the stage): ``mask`` (:class:`~medvl.models.lvmae.MaskConfig`), the decoder's
``decoder_hidden``/``decoder_layers``/``decoder_heads`` and ``norm_target``. Masks come from torch's global generator,
whose state every checkpoint saves, so a resumed run draws the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.models.lvmae import MaskConfig, MaskedBagDecoder, mask_bag, masked_reconstruction_loss, visible_items
from medvl.train.config import StageConfig
from medvl.train.objectives import Objective, register_objective

__all__ = ["MaskedEmbeddingObjective", "MaskedEmbeddingOptions", "bag_tower"]


@dataclass
class MaskedEmbeddingOptions(Config):
    """Options of the ``masked_embedding`` objective."""

    mask: MaskConfig = field(default_factory=MaskConfig)
    decoder_hidden: int = 128
    decoder_layers: int = 1
    decoder_heads: int = 4
    norm_target: bool = True


def bag_tower(model: nn.Module, dataset: Any, field_name: str, objective: str) -> tuple[str, nn.Module]:
    """The modality and tower behind a bag field of the dataset (a clear error otherwise)."""
    modality = getattr(dataset, "fields", {}).get(field_name)
    if modality is None:
        raise ConfigError(f"objective '{objective}': '{field_name}' is not a field of the dataset")
    tower = model.towers[modality] if modality in model.towers else None
    if getattr(tower, "modality", None) != "bag":
        raise ConfigError(f"objective '{objective}': input '{field_name}' needs a bag tower (bag-transformer, "
                          f"bag-attention, bag-abmil); the model has {', '.join(model.modalities)}")
    dim = getattr(dataset, "dim", None)
    if dim is not None and dim != tower.cfg.in_dim:
        raise ConfigError(f"objective '{objective}': the bags are {dim}-d but the bag tower takes "
                          f"{tower.cfg.in_dim}-d items (set its in_dim)")
    return modality, tower


def draw_masks(coords: torch.Tensor | None, real: torch.Tensor, cfg: MaskConfig) -> torch.Tensor:
    """``[B, N]`` masks of a padded batch of bags (each over its real items)."""
    out = torch.zeros_like(real)
    for b in range(real.shape[0]):
        n = int(real[b].sum())
        pos = coords[b, :n] if coords is not None else torch.arange(n, dtype=torch.float32)[:, None]
        out[b, :n] = mask_bag(pos.cpu(), n, cfg).to(real.device)
    return out


@register_objective("masked_embedding")
class MaskedEmbeddingObjective(Objective):
    """LV-MAE over one bag field (see the module docstring)."""

    n_inputs = 1

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        if len(stage.inputs) != 1:
            raise ConfigError(f"stage '{stage.name}': masked_embedding takes one bag input")
        modality, tower = bag_tower(model, dataset, stage.inputs[0], "masked_embedding")
        super().__init__(model, stage, dataset, seed)
        self.field, self.modality = stage.inputs[0], modality
        self.opts = MaskedEmbeddingOptions.from_dict(stage.objective_options)
        if getattr(tower.cfg, "pooler", None) != "transformer":
            raise ConfigError("objective 'masked_embedding': the bag tower must be a bag-transformer (its class token "
                              "is the slide embedding)")
        with torch.random.fork_rng(devices=[]):  # the decoder's init must not move the run's RNG stream
            torch.manual_seed(seed)
            self.head = MaskedBagDecoder(tower.cfg.hidden, tower.cfg.in_dim, self.opts.decoder_hidden,
                                         self.opts.decoder_layers, self.opts.decoder_heads, tower.cfg.pos_dim,
                                         tower.cfg.pos_scale)

    def used_prefixes(self) -> list[str]:
        return [f"model.towers.{self.modality}.", "head."]

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        bag = batch[self.field]
        feats, coords, real = bag["features"], bag.get("coords"), bag["mask"]
        masked = draw_masks(coords, real, self.opts.mask)
        fv, cv, vmask, index = visible_items(feats, coords, real, masked)
        visible = {"features": fv, "mask": vmask, **({"coords": cv} if cv is not None else {})}
        tokens, _ = self.model.towers[self.modality].encode_tokens_masked(visible)
        pred = self.head(tokens[:, 0], tokens[:, 1:], index, vmask, coords, real)
        loss = masked_reconstruction_loss(pred, feats, masked & real, self.opts.norm_target)
        return loss, {"loss_masked_embedding": float(loss.detach()),
                      "mask_ratio": float((masked & real).sum() / real.sum().clamp_min(1))}

    @torch.no_grad()
    def reconstruction_loss(self, batch: dict[str, Any]) -> float:
        """The masked reconstruction loss of a batch without training (evaluation)."""
        was = self.training
        self.eval()
        try:
            return float(self.forward(batch)[0])
        finally:
            self.train(was)
