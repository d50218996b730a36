"""Zero-shot and retrieval through a real (tiny) checkpoint, the knowledge graph and feature-store files.

Tile features are built so that, once projected by the model, they point at the ensembled text embedding of a
chosen concept: the command line must then name that concept, imply its parents, and find the slide by text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medvl.io.features import FeatureStore, TileTable
from medvl.provenance import PROVENANCE_KEY
from tests.conftest import assert_clean_error, run_cli

RCC, KIDNEY = "DOID:4450", "DOID:263"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from medvl.models import create_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    create_model("tiny-clip", random_weights=True).save(folder)
    return folder


@pytest.fixture(scope="module")
def space(checkpoint):
    from medvl.tasks.space import JointSpace

    return JointSpace.load(checkpoint, random_weights=True)


def _raw_features_for(space, targets: np.ndarray) -> np.ndarray:
    """Raw 64-d tower features whose projection is ``targets`` (least squares through the projection)."""
    w = space.model.projections["image"].weight.detach().numpy()  # [32, 64]
    return (np.linalg.pinv(w) @ targets.T).T.astype(np.float32)


def _write_slide(path: Path, feats: np.ndarray, made_by=None, encoder: str = "timm-tiny") -> Path:
    """A feature store; ``made_by`` is its provenance record (the model's own raw image-tower record: the features
    stand for what that tower gives)."""
    coords = np.stack([np.arange(len(feats)) * 224, np.zeros(len(feats))], axis=1)
    attrs = {"mpp": 0.5, "tile_px": 224, "encoder": encoder, "embed_dim": feats.shape[1], "projected": False}
    if made_by is not None:
        attrs[PROVENANCE_KEY] = made_by.to_json()
    FeatureStore(path).write(TileTable(coords, attrs, feats))
    return path


@pytest.fixture(scope="module")
def slides(space, tmp_path_factory):
    from medvl.knowledge import default_graph
    from medvl.tasks.zeroshot.classifier import ZeroShotClassifier, ZeroShotConfig
    from medvl.tasks.zeroshot.run import resolve_classes

    graph = default_graph()
    ids, _ = resolve_classes(graph, KIDNEY)
    clf = ZeroShotClassifier.from_graph(space.model, graph, ids, ZeroShotConfig())
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("slides")
    target = clf.class_embeddings[clf.class_ids.index(RCC)]
    other = clf.class_embeddings[clf.class_ids.index("DOID:2154")]  # nephroblastoma
    own = space.expected("image", projected=False)
    rcc = _write_slide(folder / "slide_a.h5", _raw_features_for(space, target + 0.01 * rng.normal(size=(40, 32))), own)
    wilms = _write_slide(folder / "slide_b.h5", _raw_features_for(space, other + 0.01 * rng.normal(size=(40, 32))),
                         own)
    # a slide whose tiles match the plain text "renal cell carcinoma" (what the retrieval test searches for)
    text = space.encode_text(["renal cell carcinoma"])[0]
    _write_slide(folder / "slide_c.h5", _raw_features_for(space, text + 0.01 * rng.normal(size=(40, 32))), own)
    return {"rcc": rcc, "wilms": wilms, "folder": folder}


def test_zeroshot_names_the_concept_and_its_parents(checkpoint, slides, tmp_path):
    r = run_cli("zeroshot", slides["rcc"], "--model", checkpoint, "--node", KIDNEY, "--temperature", "0.001",
                "--tile-scores", tmp_path / "scores.npz", "--random-weights", "--json")
    assert r.returncode == 0, r.stderr
    rec = r.json()
    assert rec["result"]["prediction"] == RCC and rec["result"]["name"] == "renal cell carcinoma"
    assert KIDNEY in rec["result"]["implies"] and rec["n_tiles"] == 40
    assert "slide_a" not in r.stdout  # a pseudonymous case_ref, never the file name
    prov = rec["provenance"]  # the model's and the input's fingerprints, and the record of the vectors
    assert prov["model"]["random_weights"] == ["image", "text"] and prov["input"] and prov["vectors"]["model"]["id"]
    scores = np.load(tmp_path / "scores.npz")
    assert scores["scores"].shape[0] == 40 and scores["coords"].shape == (40, 2)


def test_feature_file_from_another_encoder_is_refused(checkpoint, space, tmp_path):
    from medvl.errors import InputError
    from medvl.io.embeddings import load_embeddings
    from medvl.provenance import ModelPrint, Provenance

    own = space.expected("image", projected=False)
    wide = _write_slide(tmp_path / "wide.h5", np.zeros((5, 48), np.float32), own)
    with pytest.raises(InputError, match="48-d but the model's image tower outputs 64-d"):
        space.to_joint(load_embeddings(wide), "image", origin=wide)
    feats = np.random.default_rng(1).normal(size=(5, 64)).astype(np.float32)
    resnet = Provenance(model=ModelPrint(encoder="timm:resnet50", weights="0" * 40, config="c"),
                        preprocessing=own.preprocessing)
    other = _write_slide(tmp_path / "other.h5", feats, resnet, encoder="timm:resnet50")
    assert_clean_error(run_cli("zeroshot", other, "--model", checkpoint, "--classes", "tumour,normal tissue",
                               "--random-weights"), "timm:resnet50", "not by 'tiny'", "weights differ")


def test_index_text_to_slide_and_case_to_case(checkpoint, slides, tmp_path):
    out = tmp_path / "index"
    b = run_cli("index", "build", slides["folder"], "--model", checkpoint, "--out", out, "--random-weights", "--json")
    assert b.returncode == 0, b.stderr
    assert b.json()["count"] == 3 and b.json()["kind"] == "flat" and b.json()["space"] == "joint"
    s = run_cli("index", "search", "--index", out, "--model", checkpoint, "--text", "renal cell carcinoma",
                "--query", slides["wilms"], "-k", "2", "--random-weights", "--json")
    assert s.returncode == 0, s.stderr
    text_hits, case_hits = (res["hits"] for res in s.json()["results"])
    assert text_hits[0]["source"] == "slide_c" and text_hits[0]["score"] > 0.99
    assert case_hits[0]["source"] == "slide_b" and case_hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert_clean_error(run_cli("index", "search", "--index", out, "--text", "renal cell carcinoma"), "--model")


# ---------------------------------------------------------------------------------------- issue 16: zeroshot flags
def test_zeroshot_takes_a_custom_graph_and_repeated_classes_with_commas(checkpoint, slides, tmp_path):
    from medvl.knowledge.concept import Concept
    from medvl.knowledge.graph import DiseaseGraph

    graph = DiseaseGraph([Concept("X:1", "renal cell carcinoma, clear cell type", source="X"),
                          Concept("X:2", "nephroblastoma of the kidney", source="X")])
    path = graph.save(tmp_path / "custom.json.gz")
    r = run_cli("zeroshot", slides["rcc"], "--model", checkpoint, "--graph", path, "--class", "X:1", "--class", "X:2",
                "--class", "carcinoma, clear cell", "--random-weights", "--json")  # custom ids, a name with a comma
    assert r.returncode == 0, r.stderr
    top = {t["id"]: t["name"] for t in r.json()["result"]["top"]}
    assert top == {"X:1": "renal cell carcinoma, clear cell type", "X:2": "nephroblastoma of the kidney",
                   "carcinoma, clear cell": "carcinoma, clear cell"}
    assert_clean_error(run_cli("zeroshot", slides["rcc"], "--model", checkpoint, "--graph", tmp_path / "no.json.gz",
                               "--class", "a", "--class", "b", "--random-weights"), "graph file not found")


def test_tile_scores_feed_the_heatmap(checkpoint, space, tmp_path):
    """``zeroshot --tile-scores`` output goes straight into ``slide heatmap --scores``, on the tiles it scored."""
    from medvl.resources import bundled

    slide = bundled("slide")
    tiles = tmp_path / "tiles"
    assert run_cli("slide", "tile", slide, "--out", tiles, "--mpp", "8", "--size", "32").returncode == 0
    h5 = next(tiles.glob("*.h5"))
    table = FeatureStore(h5).read()
    feats = np.random.default_rng(0).normal(size=(len(table), 64)).astype(np.float32)
    own = space.expected("image", projected=False).to_json()  # stand for what the model's own tower gives
    FeatureStore(h5).write(TileTable(table.coords, {**table.attrs, "encoder": "timm-tiny", "embed_dim": 64,
                                                    "projected": False, PROVENANCE_KEY: own}, feats,
                                     table.tissue_fraction))
    scores = tmp_path / "scores.npz"
    z = run_cli("zeroshot", h5, "--model", checkpoint, "--classes", f"{RCC},{KIDNEY}", "--tile-scores", scores,
                "--random-weights")
    assert z.returncode == 0, z.stderr
    out = tmp_path / "maps"
    ambiguous = run_cli("slide", "heatmap", slide, "--features", tiles, "--scores", scores, "--out", out)
    assert_clean_error(ambiguous, "--scores-class", RCC)
    drawn = run_cli("slide", "heatmap", slide, "--features", tiles, "--scores", scores, "--scores-class", RCC,
                    "--out", out, "--json")
    assert drawn.returncode == 0, drawn.stderr
    assert (out / f"{h5.stem}_heatmap.png").stat().st_size > 1000
    other = tmp_path / "other.npz"
    np.savez(other, scores=np.zeros((len(table), 2)), class_ids=np.array([RCC, KIDNEY]),
             coords=table.coords + 1)
    assert_clean_error(run_cli("slide", "heatmap", slide, "--features", tiles, "--scores", other, "--scores-class",
                               RCC, "--out", out), "other tiles")
