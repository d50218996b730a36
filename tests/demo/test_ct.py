"""The ``ct`` demo step: fast, idempotent, and its outputs are where it says."""

from __future__ import annotations

import time

import numpy as np

from medvl.demo.ct import step_ct
from medvl.workspace import Workspace


def test_demo_step_runs_twice(tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    start = time.perf_counter()
    first = step_ct(ws)
    assert time.perf_counter() - start < 45
    assert first["shape"] == [122, 101, 30] and first["orientation"] == "RAS"
    assert first["kidney_crop_shape"] == [1, 32, 128, 128] and first["kidney_crop_cached"] is False
    with np.load(ws.root / first["embedding"]) as z:
        assert list(z["ids"]) == ["example_ct_sm"] and z["embeddings"].shape == (1, first["embed_dim"])
        assert str(z["encoder"]) == first["tower"] and not bool(z["projected"])
    entries = sorted(p.name for p in ws.volumes.rglob("*.npz"))
    second = step_ct(ws)
    assert second["kidney_crop_cached"] is True
    assert sorted(p.name for p in ws.volumes.rglob("*.npz")) == entries
