"""Image transforms that turn stored pixels into a tower's input.

:func:`preprocess_grayscale` is the one transform for BreastMNIST-style grayscale images: training
(:mod:`medvl.train.data`), zero-shot evaluation and the apps all call it, so they see the same tensors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["preprocess_grayscale"]


def preprocess_grayscale(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, H, W]`` grayscale -> float ``[N, 3, size, size]``, scaled to [0, 1] then standardised.

    The one transform for BreastMNIST-style images, used by training and by zero-shot evaluation alike.
    """
    x = torch.as_tensor(np.asarray(images)).float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - 0.5) / 0.25).expand(-1, 3, -1, -1).contiguous()
