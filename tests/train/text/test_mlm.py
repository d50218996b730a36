"""The mlm objective: masking strategies, the same loss and gradients for 1 and 2 processes, bf16, exact resume."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from medvl.errors import ConfigError
from medvl.models.text import hf_text_tiny
from medvl.resources import config_dir
from medvl.train import TrainConfig, train
from medvl.train.text.masking import IGNORE, Masker, MaskingConfig
from tests.train.text import ddp_text_worker

RECIPE = config_dir() / "recipes" / "text-dapt-mlm-tiny.yaml"
TEXTS = ddp_text_worker.TEXTS


def _masker(**options) -> Masker:
    tower = hf_text_tiny(max_length=32)
    from medvl.train.text.common import concept_tagger

    cfg = MaskingConfig.from_dict(options)
    tagger = concept_tagger(tower.tokenizer, ["doid_top_nodes"], "") if cfg.strategy == "concept" else None
    return Masker(cfg, tower.tokenizer, 32, tagger)


def _words_of(masker: Masker, texts: list[str]) -> list[list[list[int]]]:
    enc = masker.tokenizer(texts, padding=True, truncation=True, max_length=32, return_offsets_mapping=True)
    out = []
    for row in range(len(texts)):
        words: dict[int, list[int]] = {}
        for pos, w in enumerate(enc.word_ids(row)):
            if w is not None:
                words.setdefault(w, []).append(pos)
        out.append(list(words.values()))
    return out


def test_whole_word_masking_takes_whole_words_and_depends_only_on_seed_step_and_text():
    masker = _masker(strategy="whole-word", probability=0.3)
    batch = masker(TEXTS, seed=0, step=5)
    chosen = batch.labels != IGNORE
    for row, words in enumerate(_words_of(masker, TEXTS)):
        for positions in words:
            flags = {bool(chosen[row, p]) for p in positions}
            assert len(flags) == 1, "a word is masked whole or not at all"
    assert torch.equal(batch.labels[chosen], batch.original[chosen])
    assert (batch.inputs["input_ids"][chosen] == masker.tokenizer.mask_token_id).float().mean() > 0.5
    # the same text masks the same way in another batch, another step masks differently
    alone = masker(TEXTS[3:4], seed=0, step=5)
    n = int(alone.inputs["attention_mask"].sum())
    assert torch.equal(alone.labels[0, :n], batch.labels[3, :n])
    assert not torch.equal(masker(TEXTS, seed=0, step=6).labels, batch.labels)


def test_span_masking_masks_contiguous_words_and_concept_masking_whole_mentions():
    span = _masker(strategy="span", probability=0.3, span_p=0.3)
    text = ["no pleural effusion or pneumothorax is seen in the left or right lung today"]
    labels = span(text, seed=1, step=0).labels[0]
    runs = (labels != IGNORE).int().diff().ne(0).sum()
    assert (labels != IGNORE).sum() >= 4 and runs <= 4  # few contiguous runs, not scattered tokens
    concept = _masker(strategy="concept", probability=0.2)
    text = ["Findings: lung cancer in the right upper lobe, with benign nodules elsewhere and no effusion."]
    mention = concept.tagger.find(text[0])
    assert [m.text for m in mention][:1] == ["lung cancer"]
    batch = concept(text, seed=0, step=0)
    enc = concept.tokenizer(text, return_offsets_mapping=True)
    start, end = mention[0].start, mention[0].end
    inside = [p for p, (a, b) in enumerate(enc["offset_mapping"][0]) if a < end and b > start]
    assert all(batch.labels[0, p] != IGNORE for p in inside), "the concept mention is masked whole, first"


def test_masking_options_are_checked():
    with pytest.raises(ConfigError, match="probability"):
        MaskingConfig(probability=1.5)
    with pytest.raises(ConfigError, match="unknown key 'strategi'"):
        MaskingConfig.from_dict({"strategi": "span"})


def test_two_processes_give_the_loss_and_gradients_of_one(tmp_path):
    cases = [("mlm-wwm", "mlm", {"probability": 0.25}), ("mlm-span", "mlm", {"strategy": "span"})]
    mp.spawn(ddp_text_worker.worker, args=(2, str(tmp_path / "init"), str(tmp_path), cases), nprocs=2, join=True)
    ddp_text_worker.worker(0, 1, str(tmp_path / "unused"), str(tmp_path), cases)
    two = torch.load(tmp_path / "world2.pt", weights_only=True)
    one = torch.load(tmp_path / "world1.pt", weights_only=True)
    for case in one:
        assert two[case]["loss"].item() == pytest.approx(one[case]["loss"].item(), abs=1e-5), case
        assert set(two[case]["grads"]) == set(one[case]["grads"]) and len(one[case]["grads"]) > 10
        assert any(k.startswith("head.") for k in one[case]["grads"])
        for name, g in one[case]["grads"].items():
            torch.testing.assert_close(two[case]["grads"][name], g, atol=1e-5, rtol=1e-4, msg=f"{case}: {name}")


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "run"
    train(TrainConfig.from_file(RECIPE), out)
    return out


def test_recipe_twin_trains_and_resumes_bit_for_bit(mlm_run, tmp_path):
    import json

    lines = [json.loads(x) for x in (mlm_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in lines] == [1, 2, 3, 4] and all(r["masked"] > 0 for r in lines)
    assert lines[-1]["loss_mlm"] < lines[0]["loss_mlm"]
    out = tmp_path / "run"
    shutil.copytree(mlm_run, out)
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step_0000004")
    (out / "checkpoints" / "latest").write_text("step_0000002\n")
    train(TrainConfig.from_file(RECIPE), out, resume=True)
    a, b = load_file(str(out / "model" / "model.safetensors")), load_file(str(mlm_run / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_with_accumulation_trains(tmp_path):
    data = TrainConfig.from_file(RECIPE).to_dict()
    data.update(precision="bf16")
    data["stages"][0].update(steps=2, grad_accum=2, objective_options={"strategy": "span"})
    summary = train(TrainConfig.from_dict(data), tmp_path / "run")
    assert summary["precision"] == "bf16" and summary["global_steps"] == 2
    assert summary["final_loss"] == pytest.approx(summary["final_loss"]) and 0 < summary["final_loss"] < 20


def test_mlm_refuses_a_non_text_input_and_the_frozen_cache(tmp_path):
    data = TrainConfig.from_file(RECIPE).to_dict()
    data["stages"][0].update(cache_frozen=True, freeze_layers={"text": 1})
    with pytest.raises(ConfigError, match="cache_frozen does not apply"):
        train(TrainConfig.from_dict(data), tmp_path / "run")


def test_the_objectives_head_can_have_its_own_learning_rate(tmp_path):
    from medvl.train.config import StageConfig
    from medvl.train.optim import build_optimizer

    obj = ddp_text_worker.build("mlm", {})
    stage = StageConfig.from_dict({"name": "t", "objective": "mlm", "inputs": ["text"], "lr": 1e-4,
                                   "param_groups": [{"prefix": "head.", "lr_scale": 20}]})
    groups = build_optimizer(obj, stage).param_groups
    head = {id(p) for p in obj.head.parameters()}
    lrs = sorted({round(g["lr"], 9) for g in groups if any(id(p) in head for p in g["params"])})
    assert lrs == [0.002]
    assert sorted({round(g["lr"], 9) for g in groups if not any(id(p) in head for p in g["params"])}) == [0.0001]
