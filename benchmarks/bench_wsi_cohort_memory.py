"""Memory across a cohort: the bundled slide processed 50 times (tissue, tiles, features) in one process.

Resident memory is sampled after every slide; the record gives the growth from the 5th slide to the 50th (target
under 5 %) and the peak. Baseline: the RSS after the 5th slide (warm-up: imports, model, allocator pools).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

import psutil  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.pathology.extract import EncoderSpec, ExtractConfig, load_tile_encoder  # noqa: E402
from medvl.pathology.pipeline import SlideJob, extract_slide, run_cohort  # noqa: E402
from medvl.pathology.tiling import TileConfig  # noqa: E402
from medvl.pathology.tissue import TissueConfig  # noqa: E402
from medvl.resources import bundled  # noqa: E402

SLIDES = 50


def main() -> None:
    path = bundled("slide")
    proc = psutil.Process()
    rss: list[float] = []
    encoder = load_tile_encoder(EncoderSpec(name="timm-tiny", random_weights=True))
    jobs = [SlideJob(f"slide_{i:03d}", path) for i in range(SLIDES)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def step(job):
            return extract_slide(job, out, TileConfig(mpp=0.5, size=224), TissueConfig(), encoder,
                                 ExtractConfig(batch_size=32, workers=2, device="cpu"))

        summary = run_cohort(jobs, step, out_dir=out, on_record=lambda r: rss.append(proc.memory_info().rss / 2**20))
    seconds = time.perf_counter() - start
    growth = (rss[-1] - rss[4]) / rss[4]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_record(
        "wsi_cohort_memory",
        baseline="RSS after the 5th slide",
        figures={"slides": SLIDES, "ok": summary["counts"].get("ok", 0), "rss_mb_5th": round(rss[4], 1),
                 "rss_mb_50th": round(rss[-1], 1), "rss_mb_max_sampled": round(max(rss), 1),
                 "peak_rss_mb": round(peak_mb, 1), "seconds_per_slide": round(seconds / SLIDES, 3)},
        ratio=1 + growth,
        ratio_meaning="RSS after slide 50 over RSS after slide 5 (1 = flat)",
        target="growth < 5 % (ratio < 1.05)",
        passed=growth < 0.05,
        notes="tissue detection + 0.5 µm/px tiling + timm-tiny features per slide, each written to its own h5; "
              "CPU only (no GPU in this environment).",
    )


if __name__ == "__main__":
    main()
