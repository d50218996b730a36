"""CT preprocessing throughput on the bundled CT NIfTI: cold (load + chain + cache write) vs cached (cache read).

Baseline: the cold path (what every epoch would cost without the cache). Target: cached >= 10x cold. Also records the
process's peak RSS.
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_record  # noqa: E402
from medvl.radiology.cache import VolumeCache  # noqa: E402
from medvl.radiology.preprocess import CTCase, preprocess_case  # noqa: E402
from medvl.radiology.transforms import CTPreprocessConfig  # noqa: E402
from medvl.resources import bundled  # noqa: E402

COLD_RUNS, CACHED_RUNS = 5, 50


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    import monai.transforms  # noqa: F401 - imported before measuring what preprocessing adds to the RSS
    import torch

    torch.set_num_threads(2)
    rss_imports = _peak_rss_mb()
    case = CTCase(bundled("ct"), "example_ct")
    cfg = CTPreprocessConfig()  # RAS, 1.5x1.5x3 mm, abdomen window, foreground crop, 128x128x32
    root = Path(tempfile.mkdtemp(prefix="bench_ct_"))
    try:
        preprocess_case(case, cfg, VolumeCache(root / "warm", cfg))  # imports and first-call setup excluded
        start = time.perf_counter()
        for i in range(COLD_RUNS):
            entry = preprocess_case(case, cfg, VolumeCache(root / f"cold{i}", cfg))
            assert not entry.hit
        cold = (time.perf_counter() - start) / COLD_RUNS
        cache = VolumeCache(root / "cold0", cfg)
        start = time.perf_counter()
        for _ in range(CACHED_RUNS):
            assert preprocess_case(case, cfg, cache).hit
        cached = (time.perf_counter() - start) / CACHED_RUNS
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = cold / cached
    write_record(
        "ct_preprocess_cache",
        baseline="medvl cold preprocessing (load NIfTI + MONAI chain + cache write), same run",
        figures={
            "cold_volumes_per_s": round(1 / cold, 2),
            "cached_volumes_per_s": round(1 / cached, 1),
            "cold_ms": round(cold * 1000, 1),
            "cached_ms": round(cached * 1000, 2),
            "input": "example_ct.nii.gz 122x101x112 @3 mm",
            "output_shape": [1, 32, 128, 128],
            "peak_rss_mb": _peak_rss_mb(),
            "rss_after_imports_mb": rss_imports,
            "torch_threads": 2,
        },
        ratio=ratio,
        ratio_meaning="cached volumes/s divided by cold volumes/s (higher is better)",
        target="cached >= 10x cold",
        passed=ratio >= 10,
        notes="Cached reads include hashing the input file's bytes (the cache key), so a changed file is never served "
        "stale. Peak RSS is the whole benchmark process (torch + MONAI imported).",
    )


if __name__ == "__main__":
    main()
