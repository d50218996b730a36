"""Per-case CT preprocessing with the cache: the function the CLI, the demo, training and Ray workers all call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.errors import InputError, MedvlError
from medvl.io.volume import Volume, load_volume, require_ct
from medvl.log import get_logger
from medvl.provenance import Provenance
from medvl.radiology.cache import CacheEntry, VolumeCache
from medvl.radiology.transforms import CTPreprocessConfig, run_chain

log = get_logger(__name__)

__all__ = ["GEOMETRY_PROBLEMS", "CTCase", "CaseResult", "iter_preprocess", "preprocess_case"]

#: warning prefixes that make a volume's geometry untrustworthy (refused unless allowed)
GEOMETRY_PROBLEMS = ("missing slices", "irregular slice spacing")


@dataclass
class CTCase:
    """One input of a CT batch: an image path, an optional label map, the DICOM series to read, and its id."""

    path: Path
    case_id: str
    labels: Path | None = None
    series: str | None = None


def _checked_volume(case: CTCase, allow_non_ct: bool, allow_irregular: bool, deid: Any) -> Volume:
    volume = require_ct(load_volume(case.path, series=case.series, deid=deid), allow_non_ct)
    bad = [w for w in volume.warnings if w.startswith(GEOMETRY_PROBLEMS)]
    if bad and not allow_irregular:
        raise InputError(case.path, f"{bad[0]} (pass --allow-irregular to preprocess anyway)")
    return volume


def preprocess_case(
    case: CTCase,
    config: CTPreprocessConfig,
    cache: VolumeCache | None = None,
    *,
    allow_non_ct: bool = False,
    allow_irregular: bool = False,
    deid: Any = None,
) -> CacheEntry:
    """Load, check and preprocess one case; read from / write to ``cache`` when given.

    Returns:
        The preprocessed volume (``array`` float32 ``[1, D, H, W]`` in [0, 1]) with ``hit`` telling whether it came
        from the cache. Nothing is written when the case fails.
    """
    if config.organ_crop is not None and case.labels is None:
        raise InputError(case.path, "the preprocessing config crops around an organ: give a label map (--labels)")
    key = cache.key(case.path, case.labels, case.series) if cache is not None else None
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            log.debug("cache hit for case %s", case.case_id)
            return hit
    volume = _checked_volume(case, allow_non_ct, allow_irregular, deid)
    labels = load_volume(case.labels) if case.labels is not None else None
    array, affine = run_chain(volume, config, labels)
    meta = {
        "case_id": case.case_id,
        "source_shape": list(volume.shape),
        "source_spacing_mm": [round(s, 4) for s in volume.spacing],
        "source_orientation": volume.orientation,
        "modality": volume.modality,
        "warnings": volume.warnings,
        "header": {k: v for k, v in volume.meta.items() if k not in ("series_found",)},
    }
    if cache is None:
        return CacheEntry(array, affine, meta, Path(), hit=False)
    # the entry's provenance: the chain, and the key (a content hash of the input files, label map and series)
    meta["provenance"] = Provenance(preprocessing=config.to_dict(), input=key).to_dict()
    entry = cache.put(key, array, affine, meta)
    log.debug("cached case %s", case.case_id)
    return entry


@dataclass
class CaseResult:
    """Outcome of one case in a batch: the preprocessed entry, or the error message (never both)."""

    case: CTCase
    entry: CacheEntry | None = None
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """A JSON line for batch output."""
        rec: dict[str, Any] = {"case_id": self.case.case_id, "path": str(self.case.path)}
        if self.error is not None:
            return {**rec, "status": "error", "error": self.error}
        entry = self.entry
        return {
            **rec,
            "status": "cached" if entry.hit else "done",
            "shape": list(entry.array.shape),
            "cache": str(entry.path) if str(entry.path) not in ("", ".") else None,
            "warnings": entry.meta.get("warnings", []),
        }


def iter_preprocess(
    cases: list[CTCase],
    config: CTPreprocessConfig,
    cache: VolumeCache | None,
    *,
    stop_on_error: bool = True,
    **options: Any,
) -> Iterator[CaseResult]:
    """Preprocess cases one by one (cache hits are read, not recomputed).

    Args:
        stop_on_error: raise the first error (one input) or record it and go on (a manifest of many cases).
        options: ``allow_non_ct``, ``allow_irregular``, ``deid`` of :func:`preprocess_case`.
    """
    for case in cases:
        try:
            yield CaseResult(case, entry=preprocess_case(case, config, cache, **options))
        except MedvlError as exc:
            if stop_on_error:
                raise
            log.warning("case %s failed: %s", case.case_id, exc)
            yield CaseResult(case, error=str(exc))
