"""Retrieval stays within the query's kind: modality, and stain/organ/magnification where known."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.embeddings import EmbeddingSet, save_embeddings
from medvl.io.features import FeatureStore, TileTable
from medvl.provenance import PROVENANCE_KEY, ModelPrint, Provenance
from medvl.tasks.retrieval.build import build_index, search_index
from tests.conftest import assert_clean_error, run_cli

DIM = 16
#: every file of the collection comes from one encoder (its provenance record): one embedding space
MADE_BY = Provenance(model=ModelPrint(encoder="enc", weights="a" * 40, config="c", modality="image"))


def _slide(path, vector, stain="H&E", mpp=0.5):
    rng = np.random.default_rng(len(str(path)))
    feats = (vector + 0.01 * rng.normal(size=(6, DIM))).astype(np.float32)
    coords = np.stack([np.arange(6) * 224, np.zeros(6)], axis=1)
    FeatureStore(path).write(TileTable(coords, {"mpp": mpp, "tile_px": 224, "encoder": "enc", "embed_dim": DIM,
                                                "projected": False, "stain": stain,
                                                PROVENANCE_KEY: MADE_BY.to_json()}, feats))
    return path


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(0)
    base = rng.normal(size=DIM)
    slides = root / "slides"
    slides.mkdir()
    _slide(slides / "he_near.h5", base + 0.3 * rng.normal(size=DIM))
    _slide(slides / "he_far.h5", rng.normal(size=DIM))
    _slide(slides / "ihc_near.h5", base + 0.05 * rng.normal(size=DIM), stain="IHC")
    ct = root / "ct.npz"  # CT volumes closer to the query than any slide
    save_embeddings(ct, EmbeddingSet((base + 0.01 * rng.normal(size=(3, DIM))).astype(np.float32),
                                     ids=np.array(["c1", "c2", "c3"]), encoder="enc", modality="volume",
                                     provenance=MADE_BY))
    query = _slide(root / "query.h5", base)
    mixed, slides_only = root / "mixed", root / "slides_only"
    rec = build_index([slides, ct], mixed)
    build_index([slides], slides_only)
    return {"root": root, "query": query, "ct": ct, "mixed": mixed, "slides_only": slides_only, "rec": rec}


def test_index_records_space_and_modalities(collection):
    rec = collection["rec"]
    assert rec["modalities"] == ["CT", "slide"] and len(rec["embedding_space"]) == 24  # a content fingerprint


def test_slide_query_gets_slides_of_its_stain_only(collection):
    (res,) = search_index(collection["mixed"], files=[collection["query"]], k=5)
    hits = res["hits"]
    assert [h["source"] for h in hits] == ["he_near", "he_far"]  # CT and IHC are nearer but of another kind
    assert {h["modality"] for h in hits} == {"slide"} and {h["stain"] for h in hits} == {"H&E"}
    assert {h["magnification"] for h in hits} == {"20x"}


def test_mixing_is_explicit(collection):
    (res,) = search_index(collection["mixed"], files=[collection["query"]], k=5, mix=True)
    assert [h["modality"] for h in res["hits"]][:3] == ["CT"] * 3 and "slide" in {h["modality"] for h in res["hits"]}


def test_query_of_another_modality_is_refused(collection):
    with pytest.raises(InputError, match="CT query on an index of slide cases is refused"):
        search_index(collection["slides_only"], files=[collection["ct"]], k=3)
    r = run_cli("index", "search", "--index", collection["slides_only"], "--query", collection["ct"])
    assert_clean_error(r, "CT query", "--mix-modalities")
    (res, *_) = search_index(collection["slides_only"], files=[collection["ct"]], k=3, mix=True)
    assert len(res["hits"]) == 3


def test_query_from_another_space_is_refused(collection, tmp_path):
    other = tmp_path / "other.npz"
    retrained = MADE_BY.replace(model=ModelPrint(encoder="enc", weights="b" * 40, config="c", modality="image"))
    save_embeddings(other, EmbeddingSet(np.zeros((1, DIM), np.float32), encoder="enc", modality="volume",
                                        provenance=retrained))  # same name and width, other weights
    with pytest.raises(InputError, match="weights differ"):
        search_index(collection["mixed"], files=[other], k=3)
    bare = tmp_path / "bare.npz"
    save_embeddings(bare, EmbeddingSet(np.zeros((1, DIM), np.float32), encoder="enc", modality="volume"))
    with pytest.raises(InputError, match="no provenance record"):
        search_index(collection["mixed"], files=[bare], k=3)
