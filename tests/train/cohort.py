"""Cohort folders built from real data for the manifest-dataset tests: BreastMNIST written out as PNG files with
captions, and the shared CT volumes with short reports written for the test."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: captions per BreastMNIST label (0 malignant, 1 normal/benign); some negate a concept, one names none
CAPTIONS = {
    0: ["breast ultrasound showing breast cancer", "an ultrasound image of breast carcinoma",
        "hypoechoic mass, suspicious for breast cancer"],
    1: ["breast ultrasound showing a breast fibroadenoma", "benign breast fibroadenoma, no evidence of breast cancer",
        "normal breast tissue without a mass"],
}
#: the ``labels`` column: concept ids (zero-shot prompts come from the graph)
LABELS = {0: "DOID:1612", 1: "DOID:1618"}
FIELDS = ["case_id", "modality", "path", "report", "labels", "split"]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def breastmnist_cohort(folder: Path, n_train: int = 160, n_test: int = 48) -> Path:
    """``folder/manifest.csv`` and ``folder/images/*.png``: BreastMNIST images with captions and concept labels."""
    from PIL import Image

    from medvl.resources import bundled

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    rows = []
    with np.load(bundled("breastmnist")) as data:
        for split, src, n in (("train", "train", n_train), ("test", "test", n_test)):
            images, labels = data[f"{src}_images"][:n], data[f"{src}_labels"].reshape(-1)[:n]
            for i, (img, label) in enumerate(zip(images, labels, strict=True)):
                name = f"images/{split}_{i:04d}.png"
                Image.fromarray(img).save(folder / name)
                caption = CAPTIONS[int(label)][i % len(CAPTIONS[int(label)])]
                rows.append({"case_id": f"{split}{i:04d}", "modality": "image", "path": name, "report": caption,
                             "labels": LABELS[int(label)], "split": split})
    return write_manifest(folder / "manifest.csv", rows)


#: short reports written for the shared CT volumes
CT_REPORTS = [
    ("example_ct.nii.gz", "clear cell renal cell carcinoma of the left kidney with mild hydronephrosis", "malignant"),
    ("example_ct_sm.nii.gz", "angiomyolipoma of the right kidney, no renal cell carcinoma", "benign"),
]


def ct_cohort(folder: Path, ct_dir: Path, copies: int = 3) -> Path:
    """``folder/manifest.csv`` over the shared CT NIfTIs (each read as several cases), with reports and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(copies):
        for name, report, label in CT_REPORTS:
            split = "test" if c == copies - 1 else "train"
            rows.append({"case_id": f"ct{c}{name[:10]}", "modality": "ct", "path": str(ct_dir / name),
                         "report": report, "labels": label, "split": split})
    return write_manifest(folder / "manifest.csv", rows)
