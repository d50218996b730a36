"""RetrievalIndex: exact vs approximate choice, recall against exact search, persistence, query checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medvl.errors import InputError
from medvl.tasks.retrieval.index import IndexConfig, RetrievalIndex, exact_neighbours, recall_at_k


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64))
    return (centres[rng.integers(0, 50, 6000)] + 0.5 * rng.normal(size=(6000, 64))).astype(np.float32)


def test_auto_picks_exact_for_small_and_ivf_for_large(vectors):
    small = RetrievalIndex.build(vectors[:500])
    assert small.kind == "flat"
    large = RetrievalIndex.build(vectors, config=IndexConfig(flat_max=1000, nprobe=8))
    assert large.kind == "ivf" and large.info["nlist"] == 6000 // 39  # every cell keeps 39 training points
    exact = exact_neighbours(vectors, vectors[:100], 10)
    assert recall_at_k(large.search_arrays(vectors[:100], 10)[1], exact) > 0.9
    hnsw = RetrievalIndex.build(vectors, config=IndexConfig(kind="hnsw"))
    assert recall_at_k(hnsw.search_arrays(vectors[:100], 10)[1], exact) > 0.95


def test_save_load_keeps_results_and_metadata(vectors, tmp_path):
    meta = pd.DataFrame({"case": [f"c{i}" for i in range(len(vectors))], "label": np.arange(len(vectors)) % 3})
    index = RetrievalIndex.build(vectors, meta, IndexConfig(kind="ivf", nprobe=4), encoder="enc-a")
    index.save(tmp_path / "idx")
    again = RetrievalIndex.load(tmp_path / "idx")
    hits = again.search(vectors[7], k=3)[0]
    assert hits.loc[0, "case"] == "c7" and hits.loc[0, "score"] == pytest.approx(1.0, abs=1e-5)
    assert list(hits.columns[:3]) == ["rank", "score", "id"] and again.index.nprobe == 4
    with pytest.raises(InputError, match="32-d but the index holds 64-d"):
        again.search(np.ones((1, 32)))
    with pytest.raises(InputError, match="encoder 'enc-b'"):
        again.search(vectors[:1], encoder="enc-b")
    with pytest.raises(InputError, match="not an index folder"):
        RetrievalIndex.load(tmp_path)
