"""CT volume/report pairs for training (RenalCLIP-style): the cohort manifest's CT rows, through the one CT chain.

Each item is a preprocessed volume (``[1, D, H, W]``, :mod:`medvl.radiology.transforms`, read through the volume
cache) and its report. The chain is the dataset's ``preprocessing``: the trainer saves it in the checkpoint
(``preprocessing.volume``), so ``medvl ct embed --model`` and ``medvl run`` preprocess new scans exactly as training
did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from medvl.config import Config
from medvl.errors import InputError
from medvl.models.domain import DataDomain
from medvl.train.data.registry import register_dataset

__all__ = ["CTReportOptions", "CTReportPairs"]


@dataclass
class CTReportOptions(Config):
    """CT scans and their reports from a cohort manifest.

    Attributes:
        manifest: the cohort manifest (rows of modality ``ct``; the ``report`` column is the text).
        preprocess: the CT chain (a ``CTPreprocessConfig`` mapping).
        cache: folder of the volume cache (``None``: preprocess on every read).
        text_column: the manifest column holding the report.
        split: keep only rows of this ``split`` (``None``: every row).
        allow_non_ct: accept non-CT series.
        allow_irregular: accept series with missing slices.
    """

    manifest: Path
    preprocess: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None
    text_column: str = "report"
    split: str | None = None
    allow_non_ct: bool = False
    allow_irregular: bool = False


@register_dataset("ct-reports", CTReportOptions)
class CTReportPairs:
    """Volume/report pairs (``volume``, ``text``) of the manifest's CT rows."""

    fields: ClassVar[dict[str, str]] = {"volume": "volume", "text": "text"}
    domains: ClassVar[dict[str, DataDomain]] = {"volume": DataDomain("ct", channels="grayscale")}

    def __init__(self, opts: CTReportOptions):
        from medvl.io.manifest import read_manifest
        from medvl.radiology.cache import VolumeCache
        from medvl.radiology.preprocess import CTCase
        from medvl.radiology.transforms import CTPreprocessConfig

        config = CTPreprocessConfig.from_dict(dict(opts.preprocess), source="ct-reports preprocess")
        rows = [r for r in read_manifest(opts.manifest, modality="ct").rows
                if opts.split is None or r.get("split") == opts.split]
        rows = [r for r in rows if r.get(opts.text_column)]
        if not rows:
            raise InputError(opts.manifest, f"no CT rows with a '{opts.text_column}' text"
                                            + (f" in split '{opts.split}'" if opts.split else ""))
        self.cases = [CTCase(r.path, r.case_id, series=r.get("series")) for r in rows]
        self.reports = [str(r.get(opts.text_column)) for r in rows]
        self.preprocessing = {"volume": config}
        self.cache = VolumeCache(opts.cache, config) if opts.cache is not None else None
        self.options = {"allow_non_ct": opts.allow_non_ct, "allow_irregular": opts.allow_irregular}

    def __len__(self) -> int:
        return len(self.cases)

    def texts(self) -> list[str]:
        return list(self.reports)

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        from medvl.radiology.preprocess import preprocess_case

        entry = preprocess_case(self.cases[index], self.preprocessing["volume"], self.cache, **self.options)
        return {"volume": torch.from_numpy(entry.array), "text": self.reports[index]}
