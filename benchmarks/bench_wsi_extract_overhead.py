"""Extraction overhead: end-to-end ``extract_features`` vs a bare model forward over pre-loaded tensors.

Same tiles (tissue tiles of CMU-1-Small-Region, 224 px at 0.5 µm/px), same model (timm resnet18, random weights: the
speed does not depend on the weights), same batch size, CPU. The bare side gets the tiles already read, resized and
normalised in memory and only runs the forward; the end-to-end side reads the slide, preprocesses and runs the same
forward, with reading overlapped on threads.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.io.slide import open_slide  # noqa: E402
from medvl.pathology.extract import EncoderSpec, ExtractConfig, extract_features, load_tile_encoder  # noqa: E402
from medvl.pathology.loader import iter_tile_batches  # noqa: E402
from medvl.pathology.tiling import TileConfig, make_tile_grid  # noqa: E402
from medvl.pathology.tissue import detect_tissue  # noqa: E402
from medvl.resources import bundled  # noqa: E402

MODEL = "resnet18"
BATCH = 16
REPEATS = 3


def main() -> None:
    path = bundled("slide")
    with open_slide(path) as s:
        mask, _ = detect_tissue(s)
        grid = make_tile_grid(s, TileConfig(mpp=0.5, size=224, min_tissue=0.25), mask)
    enc = load_tile_encoder(EncoderSpec(name="timm", model_name=MODEL, random_weights=True))
    cpu = torch.device("cpu")
    tiles = np.concatenate([t for _, t in iter_tile_batches(path, grid, batch_size=BATCH, workers=0)])
    pre = [enc.preprocess(tiles[i:i + BATCH], cpu) for i in range(0, len(tiles), BATCH)]

    def bare() -> None:
        with torch.inference_mode():
            for x in pre:
                enc.encode(x)

    def e2e() -> None:
        extract_features(path, grid, enc, ExtractConfig(batch_size=BATCH, workers=1, device="cpu"))

    bare()  # warm-up
    bare_t, e2e_t = [], []
    for _ in range(REPEATS):
        for fn, out in ((bare, bare_t), (e2e, e2e_t)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    n = len(grid)
    bare_rate, e2e_rate = n / min(bare_t), n / min(e2e_t)
    ratio = e2e_rate / bare_rate
    write_record(
        "wsi_extract_overhead",
        baseline=f"bare {MODEL} forward over pre-loaded, pre-normalised tensors",
        figures={"tiles": n, "model": MODEL, "batch_size": BATCH, "torch_threads": torch.get_num_threads(),
                 "e2e_tiles_per_s": round(e2e_rate, 2), "bare_forward_tiles_per_s": round(bare_rate, 2)},
        ratio=ratio,
        ratio_meaning="end-to-end tiles/s over bare-forward tiles/s (1 = reading and preprocessing are free)",
        target=">= 0.85 on CPU",
        passed=ratio >= 0.85,
        notes=f"best of {REPEATS} interleaved runs, CPU only (no GPU in this environment), shared 2-core machine.",
    )


if __name__ == "__main__":
    main()
