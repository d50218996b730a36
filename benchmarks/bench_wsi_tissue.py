"""Tissue detection seconds per slide on the bundled CMU-1-Small-Region (thumbnail read + mask + GeoJSON).

Baseline: the thumbnail read alone (``Slide.thumbnail`` at the same size), so the ratio shows what detection adds on
top of the unavoidable pixel read.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

from benchmarks.common import write_record  # noqa: E402
from medvl.io.slide import open_slide  # noqa: E402
from medvl.pathology.tissue import TissueConfig, detect_tissue  # noqa: E402
from medvl.resources import bundled  # noqa: E402

RUNS = 7


def main() -> None:
    path = bundled("slide")
    detect, thumb_only = [], []
    for _ in range(RUNS):
        with open_slide(path) as s:
            t = time.perf_counter()
            mask, thumb = detect_tissue(s, TissueConfig())
            mask.to_geojson()
            detect.append(time.perf_counter() - t)
        with open_slide(path) as s:
            t = time.perf_counter()
            s.thumbnail(max(thumb.shape[:2]))
            thumb_only.append(time.perf_counter() - t)
    d, b = min(detect), min(thumb_only)
    write_record(
        "wsi_tissue_detection",
        baseline="thumbnail read alone (same size)",
        figures={"seconds_per_slide": round(d, 3), "median_seconds": round(statistics.median(detect), 3),
                 "thumbnail_seconds": round(b, 3), "mask_px": list(mask.mask.shape),
                 "tissue_fraction": round(mask.tissue_fraction, 3), "polygons": len(mask.to_geojson()["features"])},
        ratio=d / b,
        ratio_meaning="detection seconds over thumbnail-read seconds (lower is better; 1 = detection is free)",
        target=None,
        passed=None,
        notes=f"best of {RUNS} runs on a shared 2-core CPU machine; no GPU.",
    )


if __name__ == "__main__":
    main()
