"""The best checkpoint of a run by one evaluation figure (a stage's ``best_metric``): ``best/`` and ``best.json``.

After every evaluation round (every ``eval_every`` steps and at the end of the stage) the figure is looked up among
the round's evaluations; when it beats the best so far the model is written to ``best/`` (atomically, a loadable
checkpoint folder) and ``best.json`` records the stage, step, metric and value. A resumed run reads ``best.json``
back, so it keeps comparing against what it measured before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json
from medvl.errors import ConfigError
from medvl.log import get_logger

__all__ = ["BestCheckpoint"]

log = get_logger(__name__)


class BestCheckpoint:
    """Keeps ``out/best`` at the best value of ``metric`` (``mode``: ``max`` or ``min``)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / "best.json"

    def record(self) -> dict[str, Any] | None:
        """What ``best.json`` holds (``None`` before the first evaluation)."""
        return json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else None

    def offer(self, model: Any, stage: Any, results: dict[str, dict[str, Any]], step: int, global_step: int) -> bool:
        """Write ``model`` as the best checkpoint when this round's ``stage.best_metric`` beats the recorded one."""
        metric = stage.best_metric
        if not metric or not results:
            return False
        found = [(name, fig[metric]) for name, fig in results.items() if isinstance(fig.get(metric), (int, float))]
        if not found:
            known = sorted({k for fig in results.values() for k, v in fig.items() if isinstance(v, (int, float))})
            raise ConfigError(f"stage '{stage.name}': best_metric '{metric}' is not a figure of its evaluations "
                              f"(they report: {', '.join(known)})")
        evaluation, value = found[0]
        best = self.record()
        if best is not None and best.get("stage") == stage.name and best.get("metric") == metric:
            better = value > best["value"] if stage.best_mode == "max" else value < best["value"]
            if not better:
                return False
        model.save(self.out / "best")
        atomic_write_json(self.path, {"stage": stage.name, "step": step, "global_step": global_step,
                                      "evaluation": evaluation, "metric": metric, "value": float(value),
                                      "mode": stage.best_mode, "model": str(self.out / "best")})
        log.info("best %s so far: %.4f at step %d of stage '%s' (saved to %s)", metric, value, step, stage.name,
                 self.out / "best")
        return True
