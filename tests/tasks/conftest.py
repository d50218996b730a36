"""Fixtures of the task tests: a real survival cohort (GBSG2 from scikit-survival) exported as a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medvl.provenance import ModelPrint, Provenance


@pytest.fixture(scope="session")
def gbsg2() -> pd.DataFrame:
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    df = X.copy()
    df["time"] = y["time"]
    df["event"] = y["cens"].astype(int)
    df["case_id"] = [f"case{i:04d}" for i in range(len(df))]
    return df.reset_index(drop=True)


@pytest.fixture(scope="session")
def gbsg2_csv(gbsg2, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "gbsg2.csv"
    gbsg2.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def gbsg2_embeddings(gbsg2, tmp_path_factory) -> Path:
    """64-d vectors per case carrying the nodal status (a stand-in for image embeddings of the tumour)."""
    from medvl.io.embeddings import EmbeddingSet, save_embeddings

    rng = np.random.default_rng(0)
    signal = np.log1p(gbsg2["pnodes"].to_numpy())[:, None] * rng.normal(size=(1, 64))
    emb = signal + rng.normal(scale=0.5, size=(len(gbsg2), 64))
    path = tmp_path_factory.mktemp("emb") / "gbsg2_emb.npz"
    save_embeddings(path, EmbeddingSet(emb.astype(np.float32), ids=gbsg2["case_id"].to_numpy(), encoder="test-enc",
                                       provenance=TEST_ENCODER))
    return path


#: the provenance record of the stand-in embeddings (what ``ct embed`` or ``medvl run`` write for their vectors)
TEST_ENCODER = Provenance(model=ModelPrint(encoder="test-enc", weights="a" * 40, config="c", modality="image",
                                           projected=True))
