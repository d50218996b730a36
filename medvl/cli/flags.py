"""Which command-line flag sets which config field: the one table the error formatter uses.

Library errors name config fields (``TileConfig.mpp: must be > 0``), which is right for library users; on the command
line the same error names the flag (``--mpp: must be > 0``). :func:`name_flags` rewrites a message with this table and
:func:`config_from` builds a config from ``--config FILE`` plus the flags given (a flag left out keeps the file's value
or, without a file, the dataclass default: defaults are declared once, in the dataclass).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from medvl.config import Config

C = TypeVar("C", bound=Config)

#: ``Class.field`` -> the flag that sets it
FLAGS: dict[str, str] = {
    "TileConfig.mpp": "--mpp",
    "TileConfig.size": "--size",
    "TileConfig.overlap": "--overlap",
    "TileConfig.min_tissue": "--min-tissue",
    "ExtractConfig.batch_size": "--batch-size",
    "ExtractConfig.workers": "--workers",
    "ExtractConfig.device": "--device",
    "SurvivalConfig.method": "--method",
    "SurvivalConfig.penalizer": "--penalizer",
    "SurvivalConfig.pca_components": "--pca",
    "SurvivalConfig.ties": "--ties",
    "SurvivalConfig.epochs": "--epochs",
    "SurvivalConfig.seed": "--seed",
    "TableSpec.table": "--table",
    "TableSpec.time": "--time",
    "TableSpec.event": "--event",
    "TableSpec.time_unit": "--time-unit",
    "CTPreprocessConfig.spacing": "--spacing",
    "CTPreprocessConfig.spatial_size": "--size",
    "CTPreprocessConfig.window": "--window",
    "CTPreprocessConfig.level": "--level",
    "CTPreprocessConfig.width": "--width",
    "ZeroShotConfig.temperature": "--temperature",
    "ZeroShotConfig.abstain_below": "--abstain-below",
}

_QUALIFIED = re.compile(r"\b([A-Z][A-Za-z]*(?:Config|Spec|Settings))\.([a-z_]+)\b")
#: the path to a nested config (``SlideSettings.tiles: ``) in front of a field that a flag names
_NESTING = re.compile(r"\b[A-Z][A-Za-z]*(?:Config|Spec|Settings)\.[a-z_]+: (?=--)")


def name_flags(message: str) -> str:
    """``message`` with every ``Class.field`` that a flag sets replaced by the flag (and the nesting before it
    dropped: the flag says where the value came from)."""
    named = _QUALIFIED.sub(lambda m: FLAGS.get(f"{m.group(1)}.{m.group(2)}", m.group(0)), message)
    return _NESTING.sub("", named)


def config_from(cls: type[C], path: Path | None, **overrides: Any) -> C:
    """``cls`` read from ``path`` (``--config FILE``) or built from its defaults, with the flags that were given.

    Args:
        cls: the config dataclass.
        path: the config file, or ``None``.
        overrides: field values from flags; ``None`` means the flag was not given. A mapping sets fields of a
            nested config (``tiles={"mpp": 1.0}``).
    """
    data = cls.from_file(path).to_dict() if path is not None else {}
    return cls.from_dict(_merge(data, overrides), source=str(path) if path is not None else None)


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in overrides.items():
        if isinstance(value, dict):
            out[key] = _merge(dict(out.get(key) or {}), value)
        elif value is not None:
            out[key] = value
    return out
