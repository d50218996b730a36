"""The run's metrics: ``metrics.jsonl`` (rank 0), and TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_text

__all__ = ["Metrics"]


class Metrics:
    """JSONL metrics (rank 0), TensorBoard when installed."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, resume_step: int):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # a resumed run drops what came after its checkpoint
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("global_step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.writer = None

    def records(self) -> list[dict[str, Any]]:
        """The lines written so far (this run's and, after a resume, those kept from before it)."""
        if not self.enabled or not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"{record['stage']}/{key}", value, record["global_step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
