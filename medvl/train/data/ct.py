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

__all__ = ["CTReportOptions", "CTReportPairs", "CTVolumes"]


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

        rows = [r for r in read_manifest(opts.manifest, modality="ct").rows
                if opts.split is None or r.get("split") == opts.split]
        rows = [r for r in rows if r.get(opts.text_column)]
        if not rows:
            raise InputError(opts.manifest, f"no CT rows with a '{opts.text_column}' text"
                                            + (f" in split '{opts.split}'" if opts.split else ""))
        self.volumes = CTVolumes(opts.preprocess, opts.cache, allow_non_ct=opts.allow_non_ct,
                                 allow_irregular=opts.allow_irregular)
        self.cases = [self.volumes.case(r) for r in rows]
        self.reports = [str(r.get(opts.text_column)) for r in rows]
        self.preprocessing = {"volume": self.volumes.config}

    def __len__(self) -> int:
        return len(self.cases)

    def texts(self) -> list[str]:
        return list(self.reports)

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        return {"volume": self.volumes.load(self.cases[index]), "text": self.reports[index]}


class CTVolumes:
    """The CT chain and its cache for training data: manifest rows -> preprocessed ``[1, D, H, W]`` tensors.

    Shared by ``ct-reports`` and the ``ct`` rows of the ``manifest`` dataset, so both read volumes exactly as
    ``medvl ct preprocess`` does and record the same chain in the checkpoint.
    """

    def __init__(self, preprocess: dict[str, Any], cache: Path | None, *, allow_non_ct: bool = False,
                 allow_irregular: bool = False):
        from medvl.radiology.cache import VolumeCache
        from medvl.radiology.transforms import CTPreprocessConfig

        self.config = CTPreprocessConfig.from_dict(dict(preprocess), source="CT preprocess")
        self.cache = VolumeCache(cache, self.config) if cache is not None else None
        self.options = {"allow_non_ct": allow_non_ct, "allow_irregular": allow_irregular}

    @staticmethod
    def case(row: Any) -> Any:
        """The :class:`~medvl.radiology.preprocess.CTCase` of a manifest row."""
        from medvl.radiology.preprocess import CTCase

        return CTCase(row.path, row.case_id, series=row.get("series"))

    def load(self, case: Any) -> torch.Tensor:
        """The preprocessed volume of ``case`` (read from / written to the cache)."""
        from medvl.radiology.preprocess import preprocess_case

        return torch.from_numpy(preprocess_case(case, self.config, self.cache, **self.options).array)
