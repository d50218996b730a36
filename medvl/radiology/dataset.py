"""A PyTorch ``Dataset`` of preprocessed CT cases for training and batch inference (workers share the cache)."""

from __future__ import annotations

from typing import Any

from medvl.radiology.cache import VolumeCache
from medvl.radiology.preprocess import CTCase, preprocess_case
from medvl.radiology.transforms import CTPreprocessConfig

__all__ = ["CTVolumeDataset"]


class CTVolumeDataset:
    """Items ``{"image": float32 Tensor[1, D, H, W], "case_id": str}`` through :func:`preprocess_case` and the cache.

    The first epoch fills the cache; later epochs (and other DataLoader workers) read it. Random augmentation belongs
    after this dataset (it would defeat the cache).

    Args:
        cases: the inputs (see :func:`medvl.radiology.cases.read_ct_cases`).
        config: the preprocessing shared with inference (store it in the model checkpoint).
        cache_root: cache folder; ``None`` preprocesses every time.
        options: ``allow_non_ct``, ``allow_irregular`` and ``deid`` of :func:`preprocess_case`.
    """

    def __init__(self, cases: list[CTCase], config: CTPreprocessConfig, cache_root: Any = None, **options: Any):
        self.cases = list(cases)
        self.config = config
        self.cache = VolumeCache(cache_root, config) if cache_root is not None else None
        self.options = options

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        case = self.cases[index]
        entry = preprocess_case(case, self.config, self.cache, **self.options)
        return {"image": torch.from_numpy(entry.array), "case_id": case.case_id}
