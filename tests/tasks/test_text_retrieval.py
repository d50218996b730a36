"""Sparse lexical retrieval (LexLIP head, inverted index), hybrid fusion and `medvl index build --kind sparse`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from medvl.errors import InputError
from medvl.models.lexical import LexicalConfig, LexicalEncoder
from medvl.tasks.retrieval.sparse import SparseIndex, matched_terms
from medvl.tasks.retrieval.text import TextIndex, TextIndexConfig, build_text_index, fuse
from tests.conftest import assert_clean_error

REPORTS = [
    "Large right pleural effusion with compressive atelectasis of the right lower lobe.",
    "The heart is normal in size. The lungs are clear. No pneumothorax.",
    "Cardiomegaly with pulmonary vascular congestion suggesting edema.",
    "Displaced fracture of the left seventh rib. No pneumothorax.",
    "Calcified granuloma in the right upper lobe, otherwise clear lungs.",
]


@pytest.fixture(scope="module")
def lexical() -> LexicalEncoder:
    return LexicalEncoder()


def test_inverted_index_scores_equal_the_dot_product(tmp_path):
    docs = sparse.random(50, 40, density=0.1, random_state=1, dtype=np.float32)
    queries = sparse.random(6, 40, density=0.2, random_state=2, dtype=np.float32)
    index = SparseIndex.build(docs, [f"t{i}" for i in range(40)], vocab_fingerprint="v1")
    scores, ids = index.search_arrays(queries, k=5)
    dense = (queries @ docs.T).toarray()
    for r in range(6):
        expect = [i for i in np.argsort(-dense[r], kind="stable") if dense[r, i] > 0][:5]
        assert ids[r][ids[r] >= 0].tolist() == expect
        assert np.allclose(scores[r][: len(expect)], dense[r, expect], rtol=1e-5)
    loaded = SparseIndex.load(index.save(tmp_path / "s"))
    assert (loaded.search_arrays(queries, k=5)[1] == ids).all() and loaded.vocabulary[3] == "t3"


def test_matched_terms_add_up_to_the_score():
    vocab = ["heart", "lung", "rib", "clear"]
    q = sparse.csr_matrix(np.array([[1.0, 0.5, 0.0, 2.0]], np.float32))
    d = sparse.csr_matrix(np.array([[0.4, 0.0, 3.0, 1.0]], np.float32))
    matched = matched_terms(q, d, vocab)
    assert [m["term"] for m in matched] == ["clear", "heart"]
    assert sum(m["contribution"] for m in matched) == pytest.approx(float((q @ d.T).toarray()[0, 0]))


def test_fusion_minmax_and_rrf_by_hand():
    dense = (np.array([0.9, 0.5, 0.1], np.float32), np.array([0, 1, 2]))
    sp = (np.array([4.0, 2.0], np.float32), np.array([2, 1]))
    got = fuse(dense, sp, "minmax", 0.5, 3)
    # dense scaled: 0 -> 1, 1 -> 0.5, 2 -> 0; sparse scaled: 2 -> 1, 1 -> 0
    assert [(d, round(s, 4)) for d, s, *_ in got] == [(0, 0.5), (2, 0.5), (1, 0.25)]
    rrf = fuse(dense, sp, "rrf", 0.5, 3)
    assert rrf[0][0] == 2 and rrf[0][1] == pytest.approx(1 / 63 + 1 / 61)
    only_dense = fuse(dense, (np.zeros(0, np.float32), np.zeros(0, np.int64)), "minmax", 0.5, 2)
    assert [(d, s) for d, s, *_ in only_dense] == [(0, pytest.approx(0.9)), (1, pytest.approx(0.5))]


def test_lexical_weights_are_sparse_lexical_and_saved_with_fingerprints(lexical, tmp_path):
    weights = lexical.encode_sparse(REPORTS[:2])
    assert weights.shape == (2, len(lexical.vocabulary)) and weights.data.min() > 0
    assert (np.diff(weights.indptr) <= lexical.config.top_k).all()
    specials = lexical.tower.tokenizer.all_special_ids
    assert weights[:, specials].nnz == 0
    top = lexical.terms(weights[1].indices[np.argsort(-weights[1].data)[:12]])
    assert {"heart", "lungs", "clear"} & set(top)
    saved = lexical.save(tmp_path / "lex")
    assert LexicalEncoder.load(saved).fingerprint == lexical.fingerprint
    other = LexicalEncoder()
    with torch.no_grad():
        other.head.bias += 0.1
    assert other.fingerprint != lexical.fingerprint


@pytest.fixture(scope="module")
def other_vocabulary(tmp_path_factory):
    """A lexical encoder over a real, different tokenizer: a small BERT saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tinybert")
    words = "the there is a in of lung lungs seen heart effusion cardiomegaly fracture nodule pneumothorax edema " \
            "atelectasis mass clear normal".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)  # transformers 5 API
    assert len(tok) == len(vocab)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    enc = LexicalEncoder(LexicalConfig(text_options={"path": str(folder)}))
    return enc.save(folder / "lexical")


def test_hybrid_text_index_finds_the_report_and_explains(tmp_path, other_vocabulary):
    meta = pd.DataFrame({"row": range(len(REPORTS)), "case_id": [f"r{i}" for i in range(len(REPORTS))]})
    rec = build_text_index(REPORTS, tmp_path / "idx", TextIndexConfig(kind="hybrid"), meta)
    assert rec["kind"] == "hybrid" and rec["sparse"]["nnz"] > 0
    index = TextIndex(tmp_path / "idx")
    hits = index.search(["pleural effusion", "rib fracture"], k=3, explain=3)
    assert hits[0].loc[0, "case_id"] == "r0" and hits[1].loc[0, "case_id"] == "r3"
    assert hits[0].loc[0, "matched"] and {"dense_score", "sparse_score"} <= set(hits[0].columns)
    with pytest.raises(InputError, match="vocabulary"):
        TextIndex(tmp_path / "idx", lexical=str(other_vocabulary))
    (tmp_path / "idx" / "index.json").unlink()  # what a killed build leaves: never loadable
    with pytest.raises(InputError, match="not a text index"):
        TextIndex(tmp_path / "idx")


def test_cli_sparse_index_build_search_and_refusal(tmp_path, cli, other_vocabulary):
    table = tmp_path / "reports.csv"
    pd.DataFrame({"uid": range(len(REPORTS) + 1), "findings": [*REPORTS, ""]}).to_csv(table, index=False)
    res = cli("index", "build", "--texts", table, "--text-column", "findings", "--id-column", "uid", "--kind",
              "sparse", "--out", tmp_path / "sp", "--json")
    assert res.returncode == 0, res.stderr
    assert res.json()["count"] == len(REPORTS) and res.json()["skipped_empty_rows"] == 1
    res = cli("index", "search", "--index", tmp_path / "sp", "--text", "cardiomegaly edema", "--explain", "3",
              "--json")
    assert res.returncode == 0, res.stderr
    top = res.json()["results"][0]["hits"][0]
    assert top["case_id"] == "2" and top["matched"][0]["contribution"] > 0
    res = cli("index", "search", "--index", tmp_path / "sp", "--text", "x", "--lexical", other_vocabulary)
    assert_clean_error(res, "vocabulary")
    res = cli("index", "build", tmp_path, "--kind", "sparse", "--out", tmp_path / "bad")
    assert_clean_error(res, "--texts")


def test_lexical_head_trains_in_the_engine_and_exports_an_encoder(tmp_path, other_vocabulary):
    """objective: lexical on text pairs: the contrastive loss drops, the head is exported and indexes with."""
    import json

    from medvl.train import TrainConfig, train

    words = ["effusion", "cardiomegaly", "fracture", "nodule", "pneumothorax", "edema", "atelectasis", "mass"]
    rows = [{"q": f"{w} seen", "d": f"there is a {w} in the lung", "split": "train"} for w in words]
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    folder = other_vocabulary.parent  # a small BERT saved with save_pretrained (fixed weights)
    cfg = TrainConfig.from_dict({
        "seed": 0, "threads": 1, "log_every": 10, "checkpoint_every": 1000,
        "model_config": {"towers": {"text": {"name": "hf-text", "options": {"path": str(folder)}}}, "embed_dim": 8},
        "data": {"dataset": "text-pairs", "options": {"table": str(tmp_path / "pairs.csv"), "query": "q",
                                                      "document": "d"}, "batch_size": 8},
        "stages": [{"name": "lex", "objective": "lexical", "inputs": ["query", "document"], "losses": [],
                    "steps": 40, "lr": 5e-3, "objective_options": {"top_k": 16, "flops": 1e-4}}],
    })
    train(cfg, tmp_path / "run")
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["loss_lexical"] < logged[0]["loss_lexical"]
    lexical = tmp_path / "run" / "objectives" / "lex"
    enc = LexicalEncoder.load(lexical)
    assert enc.config.top_k == 16
    rec = build_text_index([r["d"] for r in rows], tmp_path / "idx", TextIndexConfig(kind="sparse",
                                                                                     lexical=str(lexical)))
    assert rec["sparse"]["encoder_fingerprint"] == enc.fingerprint
    hits = TextIndex(tmp_path / "idx").search(["fracture seen"], k=1)
    assert hits[0].loc[0, "row"] == 2
