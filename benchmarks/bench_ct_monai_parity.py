"""medvl's CT chain vs a hand-written MONAI Compose with the same parameters: equal outputs, comparable time.

Target: max abs difference < 1e-5 and time ratio (hand-written time / medvl time) >= 0.9.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_record  # noqa: E402
from medvl.io.volume import load_volume  # noqa: E402
from medvl.radiology.transforms import CTPreprocessConfig, preprocess_volume  # noqa: E402
from medvl.resources import bundled  # noqa: E402

RUNS = 9


def hand_written():
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureTyped,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        Spacingd,
        Transposed,
    )

    return Compose([
        Orientationd(keys="image", axcodes="RAS", labels=None),
        Spacingd(keys="image", pixdim=(1.5, 1.5, 3.0), mode="bilinear", dtype=np.float32),
        CropForegroundd(keys="image", source_key="image", select_fn=lambda x: x > -500, margin=2, allow_smaller=True),
        ScaleIntensityRanged(keys="image", a_min=40 - 200, a_max=40 + 200, b_min=0.0, b_max=1.0, clip=True),
        ResizeWithPadOrCropd(keys="image", spatial_size=(128, 128, 32)),
        Transposed(keys="image", indices=(0, 3, 2, 1)),
        EnsureTyped(keys="image", data_type="numpy", dtype=np.float32, track_meta=False),
    ])


def main() -> None:
    import torch
    from monai.data import MetaTensor

    torch.set_num_threads(2)
    vol = load_volume(bundled("ct"))
    cfg = CTPreprocessConfig(window="abdomen", spacing=(1.5, 1.5, 3.0), spatial_size=(128, 128, 32))
    ref_chain = hand_written()

    def baseline():
        return ref_chain({"image": MetaTensor(torch.from_numpy(vol.array[None].copy()), affine=vol.affine)})["image"]

    def ours():
        return preprocess_volume(vol, cfg)

    diff = float(np.abs(np.asarray(baseline()) - ours()).max())
    t_ours, t_base = [], []
    for _ in range(RUNS):  # interleaved so machine load affects both alike
        s = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - s)
        s = time.perf_counter()
        baseline()
        t_base.append(time.perf_counter() - s)
    med_ours, med_base = float(np.median(t_ours)), float(np.median(t_base))
    best_ours, best_base = min(t_ours), min(t_base)
    ratio = best_base / best_ours
    write_record(
        "ct_monai_parity",
        baseline="hand-written MONAI Compose (Orientationd, Spacingd, CropForegroundd, ScaleIntensityRanged, "
        "ResizeWithPadOrCropd, Transposed) with the same parameters, same run",
        figures={
            "max_abs_diff": diff,
            "medvl_ms_best": round(best_ours * 1000, 1),
            "monai_ms_best": round(best_base * 1000, 1),
            "medvl_ms_median": round(med_ours * 1000, 1),
            "monai_ms_median": round(med_base * 1000, 1),
            "runs": RUNS,
            "input": "example_ct.nii.gz 122x101x112 @3 mm -> [1, 32, 128, 128]",
        },
        ratio=ratio,
        ratio_meaning="hand-written MONAI time / medvl time (>= 1: medvl no slower)",
        target="max_abs_diff < 1e-5 and ratio >= 0.9",
        passed=diff < 1e-5 and ratio >= 0.9,
        notes="Best of interleaved runs (the shared 2-core machine is noisy; medians also given); both paths start "
        "from the same in-memory HU volume. Resampling (affine grid + grid_sample) is ~90% of the time in both.",
    )


if __name__ == "__main__":
    main()
