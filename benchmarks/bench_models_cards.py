"""Card encoders on CPU: medvl's extraction with each card's preprocessing against the source library's own model.

For every tile card small enough for CPU (at most ~100M parameters), the same real tissue tiles of
CMU-1-Small-Region are cut at the card's tiling and held in memory as uint8. medvl's side is the extraction path a
user runs: random weights written in the card's published layout, loaded by name through ``load_tile_encoder``
(checked against the card), then per batch the card's preprocessing (resize / crop / normalise) and the card's output
selection. The baseline is the source library's own model (timm, open_clip, transformers; for medvl's own CTransPath
and CONCH towers, timm's Swin and open_clip's attentional pooler) with the same weights, on tensors already
preprocessed. Both run in the same process, interleaved, best of ``REPEATS``; the speed does not depend on the
weights. Per card the ratio is medvl tiles/s over baseline tiles/s (1 = the card machinery costs nothing).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.io.slide import open_slide  # noqa: E402
from medvl.models.catalogue import list_cards  # noqa: E402
from medvl.pathology.extract import EncoderSpec, load_tile_encoder  # noqa: E402
from medvl.pathology.loader import iter_tile_batches  # noqa: E402
from medvl.pathology.tiling import TileConfig, make_tile_grid  # noqa: E402
from medvl.pathology.tissue import detect_tissue  # noqa: E402
from medvl.resources import bundled  # noqa: E402
from tests.models.card_references import reference_for  # noqa: E402

MAX_PARAMS = 100e6
TILES = int(os.environ.get("MEDVL_BENCH_TILES", "16"))
BATCH = 16
REPEATS = 2


def _tiles(tile_px: int, mpp: float) -> np.ndarray:
    path = bundled("slide")
    with open_slide(path) as s:
        mask, _ = detect_tissue(s)
        grid = make_tile_grid(s, TileConfig(mpp=mpp, size=tile_px, min_tissue=0.5), mask)
    tiles = np.concatenate([t for _, t in iter_tile_batches(path, grid, batch_size=BATCH, workers=0)])
    reps = -(-TILES // len(tiles))
    return np.concatenate([tiles] * reps)[:TILES]


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_card(card, folder: Path) -> dict:
    torch.manual_seed(0)
    _, reference = reference_for(card)(card, dict(card.builder.kwargs), folder)
    encoder = load_tile_encoder(EncoderSpec(name=card.name, weights=str(folder)))
    tiles = _tiles(card.tile.tile_px, card.tile.mpp)
    cpu = torch.device("cpu")
    batches = [tiles[i:i + BATCH] for i in range(0, len(tiles), BATCH)]
    pre = [encoder.preprocess(b, cpu) for b in batches]

    def medvl_side() -> None:
        with torch.inference_mode():
            for b in batches:
                encoder.encode(encoder.preprocess(b, cpu))

    def source_side() -> None:
        with torch.inference_mode():
            for x in pre:
                reference(x)

    with torch.inference_mode():
        diff = float((encoder.encode(pre[0]) - reference(pre[0])).abs().max())
    source_side()  # warm-up
    m_t, s_t = [], []
    for _ in range(REPEATS):
        m_t.append(_time(medvl_side))
        s_t.append(_time(source_side))
    n = len(tiles)
    return {"params": card.params.counted, "tile": f"{card.tile.tile_px}px@{card.tile.mpp}mpp->{card.tile.input_px}",
            "medvl_tiles_per_s": round(n / min(m_t), 2), "source_tiles_per_s": round(n / min(s_t), 2),
            "ratio": round(min(s_t) / min(m_t), 3), "max_abs_diff": diff}


def main() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    only = set(filter(None, os.environ.get("MEDVL_BENCH_CARDS", "").split(",")))
    cards = [c for c in list_cards("tile") if c.checkable and c.params.counted and c.params.counted <= MAX_PARAMS
             and (not only or c.name in only)]
    per_card = {}
    for card in cards:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-{card.name}-"))
        try:
            per_card[card.name] = bench_card(card, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(card.name, json.dumps(per_card[card.name]), flush=True)
    ratios = [r["ratio"] for r in per_card.values()]
    worst = min(ratios)
    write_record(
        "models_cards_cpu",
        baseline="the source library's own model (timm / open_clip / transformers) with the same weights, on "
                 "pre-loaded, pre-normalised tensors",
        figures={"tiles_per_card": TILES, "batch_size": BATCH, "torch_threads": torch.get_num_threads(),
                 "cards": per_card, "median_ratio": round(float(np.median(ratios)), 3)},
        ratio=worst,
        ratio_meaning="worst card: medvl tiles/s (uint8 tiles -> card preprocessing -> card output) over the source "
                      "model's tiles/s on preprocessed tensors (1 = the card machinery is free)",
        target=">= 0.85 for every card on CPU",
        passed=worst >= 0.85,
        notes=f"best of {REPEATS} interleaved runs per card, CPU only, shared 2-core machine; random weights in the "
              "published layout, loaded through the card's weight check; max_abs_diff is medvl vs source on the "
              "same batch.",
    )


if __name__ == "__main__":
    main()
