"""Training: typed recipes, datasets and samplers, the engine (DDP, AMP, exact resume) and objectives.

Example:
    >>> from medvl.train import TrainConfig, train
    >>> summary = train(TrainConfig.from_file("medvl/configs/tiny-keep.yaml"), "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

# torch loads on first use
_EXPORTS = {
    **dict.fromkeys(("DataConfig", "ParamGroupConfig", "StageConfig", "TrainConfig"), "medvl.train.config"),
    **dict.fromkeys(("train", "TrainingDiverged"), "medvl.train.engine"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
