"""Resident memory of ``ct embed`` over 50 volumes: streaming (medvl) against holding every preprocessed volume.

medvl's :func:`~medvl.radiology.embed.embed_cases` hands each preprocessed volume to the encoder as soon as a batch is
full and drops it after. Baseline: the earlier code path, which preprocessed every case into a list first and then
embedded the list (``list(iter_preprocess(...))`` + ``embed_arrays``), measured in the same run. Each variant runs in
its own process; a sampler thread reads the resident set size (``/proc/self/statm``) every 20 ms.

Figures: peak RSS growth over the RSS after the model is loaded, and the growth between 20 % and 100 % of the run
(flat means a constant working set however many volumes come).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_record  # noqa: E402

N_VOLUMES = 50
SIZE = (128, 128, 64)  # x, y, z voxels: 4 MiB of float32 per preprocessed volume
BATCH = 4


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), _rss_mb()))
            time.sleep(0.02)


def _variant(name: str, folder: Path) -> dict:
    import numpy as np
    import torch

    from medvl.radiology.embed import embed_arrays, embed_cases, load_volume_encoder
    from medvl.radiology.preprocess import CTCase, iter_preprocess
    from medvl.radiology.transforms import CTPreprocessConfig

    torch.set_num_threads(2)
    cfg = CTPreprocessConfig(spacing=(1.5, 1.5, 1.5), spatial_size=SIZE, foreground_crop=False)
    cases = [CTCase(p, p.name.split(".")[0]) for p in sorted(folder.glob("*.nii.gz"))]
    encoder = load_volume_encoder("resnet3d-tiny", device="cpu")
    embed_arrays(encoder, [np.zeros((1, SIZE[2], SIZE[1], SIZE[0]), np.float32)])  # warm: allocator, kernels
    base = _rss_mb()
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    if name == "stream":
        embed_cases(cases, cfg, encoder, folder / "out.npz", None, batch_size=BATCH)
    else:  # the earlier path: every preprocessed volume in a list, then the embedding
        results = list(iter_preprocess(cases, cfg, None))
        embed_arrays(encoder, [r.entry.array for r in results], batch_size=BATCH)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    t0 = sampler.samples[0][0]
    rss = [(t - t0, m - base) for t, m in sampler.samples]
    at20 = next(m for t, m in rss if t >= 0.2 * seconds)
    return {"peak_growth_mb": round(max(m for _, m in rss), 1), "growth_20_to_100_pct_mb": round(rss[-1][1] - at20, 1),
            "seconds": round(seconds, 1)}


def main() -> None:
    if len(sys.argv) == 3:  # a child process: one variant
        print(json.dumps(_variant(sys.argv[1], Path(sys.argv[2]))))
        return
    from medvl.resources import bundled

    tmp = Path(tempfile.mkdtemp(prefix="medvl-bench-ct-mem-"))
    try:
        for i in range(N_VOLUMES):
            shutil.copy(bundled("ct_small"), tmp / f"case{i:03d}.nii.gz")
        out = {}
        for name in ("stream", "hold_all"):
            res = subprocess.run([sys.executable, __file__, name, str(tmp)], check=True, capture_output=True,
                                 text=True, env={**os.environ, "MEDVL_NO_PROGRESS": "1"})
            out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stream, hold = out["stream"], out["hold_all"]
    volume_mb = SIZE[0] * SIZE[1] * SIZE[2] * 4 / 2**20
    write_record(
        "ct_embed_memory",
        baseline="the earlier path in the same run: preprocess every case into a list, then embed the list",
        figures={"volumes": N_VOLUMES, "preprocessed_volume_mb": volume_mb, "batch": BATCH,
                 "stream_peak_growth_mb": stream["peak_growth_mb"],
                 "stream_growth_20_to_100_pct_mb": stream["growth_20_to_100_pct_mb"],
                 "hold_all_peak_growth_mb": hold["peak_growth_mb"],
                 "hold_all_growth_20_to_100_pct_mb": hold["growth_20_to_100_pct_mb"],
                 "stream_seconds": stream["seconds"], "hold_all_seconds": hold["seconds"]},
        ratio=stream["peak_growth_mb"] / hold["peak_growth_mb"] if hold["peak_growth_mb"] > 0 else None,
        ratio_meaning="streaming peak RSS growth / hold-all peak RSS growth (lower = less memory)",
        target=f"RSS flat over {N_VOLUMES} volumes: growth from 20 % to 100 % of the run below two preprocessed "
               f"volumes ({2 * volume_mb:.0f} MB)",
        passed=stream["growth_20_to_100_pct_mb"] < 2 * volume_mb,
        notes="CPU, 2 threads, resnet3d-tiny, no volume cache (every case preprocessed); the bundled 122x101x30 CT "
              "copied 50 times.",
    )


if __name__ == "__main__":
    main()
