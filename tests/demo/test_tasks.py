"""The ``tasks`` demo step: survival on GBSG2 with a KM plot, a tile index over slide features, graceful skips."""

from __future__ import annotations

import json

import numpy as np

from medvl.io.features import FeatureStore, TileTable
from medvl.models.identity import tower_print
from medvl.provenance import PROVENANCE_KEY, Provenance
from medvl.workspace import Workspace


def test_demo_step_fits_survival_and_indexes_tiles(tmp_path):
    from medvl.demo.tasks import step_tasks

    ws = Workspace(tmp_path / "ws").create()
    feats = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    coords = np.stack([np.arange(30) * 224, np.zeros(30)], axis=1)
    made_by = Provenance(model=tower_print("timm-tiny", {}, "image", seed=0))  # what `slide extract` records
    attrs = {"encoder": "timm-tiny", "projected": False, PROVENANCE_KEY: made_by.to_json()}
    FeatureStore(ws.features / "slide.h5").write(TileTable(coords, attrs, feats))
    rec = step_tasks(ws)
    assert rec["survival"]["n"] == 686 and 0.65 < rec["survival"]["harrell_c"] < 0.75
    assert (ws.models / "survival" / "kaplan_meier.png").stat().st_size > 5000
    assert rec["tile_index"]["vectors"] == 30 and (ws.index / "tiles" / "index.faiss").is_file()
    assert "skipped" in rec["breastmnist"] and "skipped" in rec["slide_cases"]  # no train step in this workspace
    again = step_tasks(ws)  # idempotent
    assert again["survival"]["harrell_c"] == rec["survival"]["harrell_c"]
    json.dumps(again)
