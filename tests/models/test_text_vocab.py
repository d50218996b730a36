"""The concept-aware vocabulary of the text tower: added tokens, initialisation, checkpoints, ablation, bad input."""

from __future__ import annotations

import pytest
import torch

from medvl.errors import ConfigError
from medvl.models import create_model
from medvl.models.multimodal import ModelConfig
from medvl.models.text import hf_text_tiny
from medvl.models.text_vocab import VocabConfig, apply_vocab
from medvl.resources import config_dir

SOURCES = ["doid_top_nodes"]


def _tiny_with(vocab: dict) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "towers": {"text": {"name": "hf-text-tiny", "options": {"vocab": vocab}, "projection": "none"}},
            "embed_dim": 32,
        }
    )


def test_concept_rows_start_from_sub_word_means_or_at_random():
    base = hf_text_tiny()
    table = base.model.get_input_embeddings().weight.detach().clone()
    tok, counts = apply_vocab(
        VocabConfig(init="name", sources=SOURCES, words=["pneumothorax"]), base.tokenizer, base.model
    )
    new = base.model.get_input_embeddings().weight
    assert counts["concepts"] > 50 and counts["words"] == 1 and new.shape[0] == counts["vocab_size"] == len(tok)
    assert torch.equal(new[: table.shape[0]], table), "existing rows are kept"
    row = tok.token_ids["DOID:1324"]  # lung cancer
    pieces = [i for i in tok.tokenizer("lung cancer", add_special_tokens=False)["input_ids"]]
    torch.testing.assert_close(new[row], table[pieces].mean(0))
    word = tok.tokenizer.convert_tokens_to_ids("pneumothorax")
    old_pieces = hf_text_tiny().tokenizer("pneumothorax", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(new[word], table[old_pieces].mean(0))
    assert tok.tokenize("Lung cancer with pneumothorax") == ["[DOID:1324]", "with", "pneumothorax"]
    rand = hf_text_tiny()
    tok2, _ = apply_vocab(VocabConfig(init="random", sources=SOURCES), rand.tokenizer, rand.model)
    assert not torch.allclose(rand.model.get_input_embeddings().weight[tok2.token_ids["DOID:1324"]], new[row])


def test_a_checkpoint_keeps_the_vocabulary_for_create_model_and_prompts(tmp_path):
    model = create_model(_tiny_with({"sources": SOURCES}), random_weights=True).eval()
    model.save(tmp_path / "m")
    again = create_model(tmp_path / "m", random_weights=True)
    prompts = ["a chest radiograph showing lung cancer", "breast cancer"]
    assert type(again.towers["text"].tokenizer).__name__ == "ConceptTokenizer"
    torch.testing.assert_close(again.encode_text(prompts), model.encode_text(prompts))
    ids = again.towers["text"].tokenize(prompts)["input_ids"]
    assert again.towers["text"].tokenizer.token_ids["DOID:1612"] in ids[1].tolist()


def test_vocab_recipe_twin_trains_with_concept_masking(tmp_path):
    from medvl.train import TrainConfig, train

    summary = train(TrainConfig.from_file(config_dir() / "recipes" / "text-vocab-tiny.yaml"), tmp_path / "run")
    assert summary["global_steps"] == 4
    model = create_model(tmp_path / "run" / "model", random_weights=True)
    assert len(model.towers["text"].tokenizer) == model.towers["text"].model.get_input_embeddings().weight.shape[0]


def test_unknown_concept_ids_and_a_vocabulary_mismatch_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown concept id.*DOID:999999"):
        create_model(_tiny_with({"sources": SOURCES, "concept_ids": ["DOID:1324", "DOID:999999"]}), random_weights=True)
    model = create_model(_tiny_with({"sources": SOURCES}), random_weights=True).eval()
    model.save(tmp_path / "m")
    # a checkpoint whose tokenizer has more tokens than its encoder's table
    tower = model.towers["text"]
    tower.tokenizer.tokenizer.add_tokens(["zzzextra"])
    tower.save_tokenizer(tmp_path / "m")
    with pytest.raises(ConfigError, match="tokenizer and model vocabulary mismatch"):
        create_model(tmp_path / "m", random_weights=True)


def test_held_out_texts_are_never_concept_mentions(tmp_path):
    held = tmp_path / "held.txt"
    held.write_text("lung carcinoma\n")
    tower = create_model(_tiny_with({"sources": SOURCES, "holdout_file": str(held)}), random_weights=True).towers[
        "text"
    ]
    tok = tower.tokenizer
    assert tok.tokenize("lung cancer") == ["[DOID:1324]"]
    assert "[DOID:1324]" not in tok.tokenize("lung carcinoma")
    assert "lung carcinoma" not in tok.names["DOID:1324"]


def test_frequent_domain_words_split_into_many_pieces_become_tokens(tmp_path):
    corpus = tmp_path / "reports.txt"
    corpus.write_text("No pneumothorax. " * 6 + "Small cardiomegaly. " * 5 + "Rare atelectasis. " * 2 + "the lung " * 9)
    tower = create_model(
        _tiny_with({"concepts": False, "words_from": str(corpus), "min_count": 5, "min_pieces": 3}), random_weights=True
    ).towers["text"]
    tok = tower.tokenizer
    assert type(tok).__name__ != "ConceptTokenizer"
    assert tok.tokenize("pneumothorax and cardiomegaly") == ["pneumothorax", "and", "cardiomegaly"]
    assert "atelectasis" not in tok.get_vocab() and "lung" in tok.get_vocab()  # too rare; already a single token
