"""The frozen-layer cache: a tower's frozen lower layers computed once per text, so a step runs only the layers
that train.

With ``freeze_layers: {text: n}`` the input embedding and the lowest ``n`` layers of the text tower never change, so
their output for every text of the dataset is computed once, before the stage, and each step runs the remaining
layers on top (``Tower.encode_lower`` / ``encode_upper``). The split forward pass is compared with the tower's own on
a few texts first; a tower that does not split exactly is refused rather than trained on wrong features. The frozen
layers run in eval mode (no dropout), as frozen towers always do in this trainer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medvl.errors import ConfigError
from medvl.log import get_logger

__all__ = ["FrozenLayerCache"]

log = get_logger(__name__)


def _pad_cat(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``(hidden [B, T_i, D], mask [B, T_i])`` parts, padding every part to the widest ``T``."""
    width = max(h.shape[1] for h, _ in parts)
    hidden = torch.cat([F.pad(h, (0, 0, 0, width - h.shape[1])) for h, _ in parts])
    mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for _, m in parts])
    return hidden, mask


class FrozenLayerCache:
    """Lower-layer outputs of ``tower`` for ``texts``; :meth:`features` gives the tower's pooled features from them.

    Args:
        tower: a tower that splits its layers (``hf-text``).
        layers: how many lower layers (above the input embedding) are frozen.
        texts: every text a batch may hold; others are computed on the fly (and not kept).
        batch_size: texts per forward pass while filling the cache.
        atol: largest difference allowed between the split and the full forward pass (L2-normalised features).
    """

    def __init__(self, tower: torch.nn.Module, layers: int, texts: Sequence[str], batch_size: int = 512,
                 atol: float = 1e-4):
        self.tower, self.layers = tower, layers
        # sorted by length, so a batch pads little; rows are kept in that order
        unique = sorted(dict.fromkeys(texts), key=len)
        if not unique:
            raise ConfigError("cache_frozen: the dataset has no texts to cache")
        self.row = {t: i for i, t in enumerate(unique)}
        was_training = tower.training
        tower.eval()
        try:
            with torch.no_grad():
                parts = [tower.encode_lower(unique[i:i + batch_size], layers)
                         for i in range(0, len(unique), batch_size)]
                self.hidden, self.mask = _pad_cat(parts)
                self._check(unique[:: max(1, len(unique) // 8)][:8], atol)
        finally:
            tower.train(was_training)
        log.info("frozen-layer cache: %d texts x %d tokens (%.0f MB)", len(unique), self.mask.shape[1],
                 self.hidden.numel() * self.hidden.element_size() / 2**20)

    def _check(self, texts: list[str], atol: float) -> None:
        full = F.normalize(self.tower.encode(texts).float(), dim=-1)
        split = F.normalize(self.features(texts).float(), dim=-1)
        diff = float((full - split).abs().max())
        if not diff <= atol:
            raise ConfigError(f"cache_frozen: the split forward pass differs from the tower's own (max difference "
                              f"{diff:.2e} > {atol:.0e}); set cache_frozen: false")

    def _lower(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.row]
        if not missing:
            idx = torch.tensor([self.row[t] for t in texts], device=self.hidden.device)
            return self.hidden[idx], self.mask[idx]
        known = [t for t in dict.fromkeys(texts) if t in self.row]  # the others are computed now, not kept
        was_training = self.tower.training
        self.tower.eval()
        with torch.no_grad():
            extra = self.tower.encode_lower(missing, self.layers)
        self.tower.train(was_training)
        rows = torch.tensor([self.row[t] for t in known], dtype=torch.long, device=self.hidden.device)
        hidden, mask = _pad_cat([(self.hidden[rows], self.mask[rows]), extra])
        position = {t: i for i, t in enumerate([*known, *missing])}
        idx = torch.tensor([position[t] for t in texts], device=hidden.device)
        return hidden[idx], mask[idx]

    def features(self, texts: list[str]) -> torch.Tensor:
        """Pooled features ``[B, D]`` of ``texts``, as ``tower.encode(texts)`` computes them."""
        hidden, mask = self._lower(list(texts))
        width = max(1, int(mask.sum(1).max()))  # padding beyond the longest text is masked anyway: cut it
        return self.tower.encode_upper(hidden[:, :width], mask[:, :width], self.layers)
