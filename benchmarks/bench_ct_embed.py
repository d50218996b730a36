"""3-D ResNet-18 (MONAI, via medvl's ``resnet3d`` tower) embedding throughput at RenalCLIP's 128 x 128 x 32 crop.

Baseline: the bare MONAI ``resnet18`` (feed_forward=False) forward on the same batches. On a GPU it runs with AMP
(bf16); without a GPU it runs on the CPU and the record says so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_record  # noqa: E402


def _rate(fn, x, runs: int, sync) -> float:
    import torch

    with torch.inference_mode():
        fn(x)
        sync()
        start = time.perf_counter()
        for _ in range(runs):
            fn(x)
        sync()
    return runs * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    import torch
    from monai.networks.nets import resnet18

    from medvl.models import create_tower

    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    torch.set_num_threads(2)
    batch, runs = (16, 10) if gpu else (2, 3)
    x = torch.rand(batch, 1, 32, 128, 128, device=device)  # [B, 1, D, H, W] from the CT chain
    tower = create_tower("resnet3d", depth=18).to(device).eval()
    bare = resnet18(spatial_dims=3, n_input_channels=1, feed_forward=False, conv1_t_stride=2).to(device).eval()
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else torch.autocast("cpu", enabled=False)
    from benchmarks.common import GpuUtilisation, write_not_measured

    with ctx:
        with GpuUtilisation() as util_ours:
            ours = _rate(tower.encode, x, runs, sync)
        with GpuUtilisation() as util_base:
            base = _rate(bare, x, runs, sync)
    util = {"medvl": util_ours.summary(), "monai": util_base.summary()} if gpu else {}
    if not gpu:
        write_not_measured("ct_resnet18_embed_gpu", baseline="bare MONAI resnet18 on the same batches, same GPU",
                           ratio_meaning="medvl tower volumes/s / bare MONAI volumes/s (bf16, batch 16)")
    write_record(
        "ct_resnet18_embed_gpu" if gpu else "ct_resnet18_embed",
        baseline="bare MONAI resnet18 (feed_forward=False) on the same batches, same run",
        figures={"medvl_volumes_per_s": round(ours, 2), "monai_volumes_per_s": round(base, 2), "batch": batch,
                 "input": "[B, 1, 32, 128, 128]", "device": device, "amp": "bf16" if gpu else "off", **util},
        ratio=ours / base,
        ratio_meaning="medvl tower volumes/s / bare MONAI volumes/s",
        target=None,
        passed=None,
        notes=None if gpu else "No GPU in this session: measured on the CPU (2 threads); the GPU figure the issue asks "
        "for needs a rerun of this script on a GPU machine.",
    )


if __name__ == "__main__":
    main()
