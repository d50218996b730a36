"""Training: typed recipes, datasets and samplers, the engine (DDP, AMP, exact resume) and objectives.

Example:
    >>> from medvl.train import TrainConfig, train
    >>> summary = train(TrainConfig.from_file("configs/tiny-keep.yaml"), "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataConfig", "ParamGroupConfig", "StageConfig", "TrainConfig", "TrainingDiverged", "train"]


def __getattr__(name: str) -> Any:  # torch loads on first use
    if name in ("DataConfig", "ParamGroupConfig", "StageConfig", "TrainConfig"):
        from medvl.train import config

        return getattr(config, name)
    if name in ("train", "TrainingDiverged"):
        from medvl.train import engine

        return getattr(engine, name)
    raise AttributeError(name)
