"""GPU extraction throughput: ViT-B/16 in bf16 over the bundled slide's tiles, end to end vs bare forward.

Random weights (no download: the GPU machine may be offline); GPU utilisation sampled with nvidia-smi. Needs CUDA.
Without a GPU the script still writes its record, saying it was not measured (no numbers are invented).
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

from benchmarks.common import GpuUtilisation, write_not_measured, write_record  # noqa: E402
from medvl.io.slide import open_slide  # noqa: E402
from medvl.pathology.extract import EncoderSpec, ExtractConfig, extract_features, load_tile_encoder  # noqa: E402
from medvl.pathology.loader import iter_tile_batches  # noqa: E402
from medvl.pathology.tiling import TileConfig, make_tile_grid  # noqa: E402
from medvl.resources import bundled  # noqa: E402

NAME = "wsi_gpu_vit_b16_bf16"
BATCH = 128


def measure() -> None:
    path = bundled("slide")
    with open_slide(path) as s:  # every tile of the slide at 0.25 µm/px: ~470 tiles
        grid = make_tile_grid(s, TileConfig(mpp=0.25, size=224, min_tissue=0))
    enc = load_tile_encoder(EncoderSpec(name="timm", model_name="vit_base_patch16_224"))
    dev = torch.device("cuda")
    cfg = ExtractConfig(batch_size=BATCH, workers=8, device="cuda")
    extract_features(path, grid, enc, cfg)  # warm-up (cuDNN autotune, allocator)
    torch.cuda.synchronize()
    with GpuUtilisation() as util_e2e:
        t = time.perf_counter()
        extract_features(path, grid, enc, cfg)
        torch.cuda.synchronize()
        e2e = len(grid) / (time.perf_counter() - t)
    tiles = np.concatenate([b for _, b in iter_tile_batches(path, grid, batch_size=BATCH, workers=4)])
    xs = [enc.preprocess(tiles[i:i + BATCH], dev).contiguous(memory_format=torch.channels_last)
          for i in range(0, len(tiles), BATCH)]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for x in xs:
            enc.encode(x)
        torch.cuda.synchronize()
        with GpuUtilisation() as util_bare:
            t = time.perf_counter()
            for x in xs:
                enc.encode(x)
            torch.cuda.synchronize()
    bare = len(grid) / (time.perf_counter() - t)
    write_record(NAME, baseline="bare ViT-B/16 bf16 forward over pre-loaded tensors on the same GPU",
                 figures={"gpu": torch.cuda.get_device_name(0), "tiles": len(grid), "batch_size": BATCH,
                          "e2e_tiles_per_s": round(e2e, 1), "bare_forward_tiles_per_s": round(bare, 1),
                          "e2e": util_e2e.summary(), "bare_forward": util_bare.summary()},
                 ratio=e2e / bare, ratio_meaning="end-to-end tiles/s over bare-forward tiles/s", target=None,
                 passed=None, notes="bf16 autocast, channels_last, 8 reader threads.")


def main() -> None:
    if torch.cuda.is_available():
        measure()
        return
    write_not_measured(NAME, baseline="bare ViT-B/16 bf16 forward over pre-loaded tensors on the same GPU",
                       ratio_meaning="end-to-end tiles/s over bare-forward tiles/s")


if __name__ == "__main__":
    main()
