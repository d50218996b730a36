"""Pre-training checks of a recipe's data. ``medvl train --check`` calls :func:`leakage_report` (issue 14 adds the
row-by-row validation beside it): every cohort manifest a stage's dataset reads (an option named ``manifest``) goes
through :func:`medvl.tasks.cohort.check_leakage`, so duplicates across splits are found before any step runs.
"""

from __future__ import annotations

from typing import Any

from medvl.train.config import TrainConfig

__all__ = ["leakage_report", "manifests_of"]


def manifests_of(config: TrainConfig) -> list[str]:
    """The manifests the recipe's datasets read (each once, in stage order)."""
    found: list[str] = []
    for index in range(len(config.stages)):
        data = config.stage_data(index)
        path = data.options.get("manifest") if data is not None else None
        if path is not None and str(path) not in found:
            found.append(str(path))
    return found


def leakage_report(config: TrainConfig, leakage: Any = None) -> list[dict[str, Any]]:
    """One leakage/duplicate record per manifest of the recipe (an empty list when it reads none).

    Args:
        config: the training recipe.
        leakage: a :class:`medvl.tasks.cohort.LeakageConfig` (default: every split of each manifest).
    """
    from medvl.tasks.cohort import LeakageConfig, check_leakage

    cfg = leakage or LeakageConfig()
    return [{**check_leakage(m, cfg), "manifest_path": m} for m in manifests_of(config)]
