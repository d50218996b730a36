"""``medvl train --check``: build every stage's data as training would, validate every row, report the counts.

:func:`resolve_data_paths` makes a recipe's relative data paths (a ``manifest``) relative to the config file's folder
and passes ``--skip-bad`` to the datasets that take it; :func:`check_data` builds each stage's dataset (every row
checked: files decode, texts are not empty, labels and splits are known) and the held-out splits its evaluations
read, and returns their counts without training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from medvl.train.config import TrainConfig

__all__ = ["check_data", "check_text", "resolve_data_paths"]


def _takes(dataset: str, option: str) -> bool:
    from medvl.train.data import dataset_options

    return option in {f.name for f in dataclasses.fields(dataset_options(dataset))}


def resolve_data_paths(config: TrainConfig, folder: Path, skip_bad: bool = False) -> TrainConfig:
    """A copy where datasets with a ``root`` option (``manifest``) find relative paths in ``folder`` (the config
    file's), and, with ``skip_bad``, leave bad rows out."""
    data = config.to_dict()
    for node in [data.get("data"), *(stage.get("data") for stage in data["stages"])]:
        if node is None:
            continue
        options = node.setdefault("options", {})
        if _takes(node["dataset"], "root") and options.get("root") is None:
            options["root"] = str(Path(folder).resolve())
        if skip_bad and _takes(node["dataset"], "skip_bad"):
            options["skip_bad"] = True
    return TrainConfig.from_dict(data)


def _heldout_splits(stage: Any) -> list[str]:
    return sorted({e.options.get("split", "test") for e in stage.evaluate if e.name == "heldout"})


def check_data(config: TrainConfig) -> dict[str, Any]:
    """Every stage's dataset built and checked; ``{"stages": {name: counts}, "skipped_rows": n}``."""
    from medvl.train.data import build_dataset

    stages: dict[str, Any] = {}
    skipped = 0
    for i, stage in enumerate(config.stages):
        data = config.stage_data(i)
        dataset = build_dataset(data.dataset, data.options)
        counts = dataset.counts() if hasattr(dataset, "counts") else {"rows": len(dataset)}
        counts["dataset"] = data.dataset
        for split in _heldout_splits(stage):
            counts.setdefault("heldout", {})[split] = len(dataset.heldout(split))
        if hasattr(dataset, "source"):
            counts["skipped"] = [p.to_dict() for p in dataset.source.rows.problems]
        skipped += counts.get("skipped_rows", 0)
        stages[stage.name] = counts
    return {"ok": True, "stages": stages, "skipped_rows": skipped}


def check_text(result: dict[str, Any]) -> str:
    """The check for people: one line per stage."""
    from medvl.train.data.manifest import counts_text

    lines = []
    for name, counts in result["stages"].items():
        if "tagged_rows" in counts:
            line = counts_text(counts)
        else:
            line = f"{counts['rows']} items ({counts['dataset']})"
        held = ", ".join(f"{n} in '{s}'" for s, n in counts.get("heldout", {}).items())
        lines.append(f"{name}: {line}" + (f"; held out: {held}" if held else ""))
    lines.append(f"check passed ({result['skipped_rows']} row(s) skipped)" if result["skipped_rows"]
                 else "check passed: every row is usable")
    return "\n".join(lines)
