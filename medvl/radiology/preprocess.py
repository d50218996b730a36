"""Per-case CT preprocessing with the cache: the function the CLI, the demo, training and Ray workers all call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.batch import BatchPolicy, failure
from medvl.errors import InputError
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
            _warn(case, hit.meta.get("warnings", []))  # what was wrong with the input is still wrong
            return hit
    volume = _checked_volume(case, allow_non_ct, allow_irregular, deid)
    _warn(case, volume.warnings)
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


def _warn(case: CTCase, warnings: list[str]) -> None:
    for warning in warnings:
        log.warning("%s: %s", case.case_id, warning)


@dataclass
class CaseResult:
    """Outcome of one case in a batch: the preprocessed entry, or the error message (never both)."""

    case: CTCase
    entry: CacheEntry | None = None
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """A JSON line for batch output (a failure is :func:`medvl.batch.failure`'s record)."""
        if self.error is not None:
            return failure(self.case.case_id, self.error, path=str(self.case.path))
        rec: dict[str, Any] = {"case_id": self.case.case_id, "path": str(self.case.path)}
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
    skip_errors: bool = False,
    **options: Any,
) -> Iterator[CaseResult]:
    """Preprocess cases one by one, lazily (cache hits are read, not recomputed).

    Args:
        skip_errors: record a failing case and go on; otherwise the first failure stops the batch with its error
            (the policy of :class:`medvl.batch.BatchPolicy`).
        options: ``allow_non_ct``, ``allow_irregular``, ``deid`` of :func:`preprocess_case`.
    """
    policy = BatchPolicy(skip_errors)
    for case in cases:
        try:
            entry = preprocess_case(case, config, cache, **options)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a case record or one clear error
            yield CaseResult(case, error=policy.fail(case.case_id, exc, case.path)["error"])
            continue
        yield CaseResult(case, entry=entry)
