"""The rtd (ELECTRA) objective: a small generator sharing the embeddings, DDP, bf16, exact resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from medvl.errors import ConfigError
from medvl.resources import config_dir
from medvl.train import TrainConfig, train
from tests.train.text import ddp_text_worker

RECIPE = config_dir() / "recipes" / "text-dapt-electra-tiny.yaml"


def test_the_generator_is_a_fraction_of_the_discriminator_and_shares_its_embeddings():
    obj = ddp_text_worker.build("rtd", {"generator_fraction": 0.5})
    gen = obj.head.generator
    assert gen.config.hidden_size == 16 and gen.config.num_hidden_layers == 2
    assert not any("word_embeddings" in name for name, _ in gen.named_parameters())
    loss, logs = obj({"text": ddp_text_worker.TEXTS})
    loss.backward()
    table = obj.tower.model.get_input_embeddings().weight
    assert table.grad is not None and table.grad.abs().sum() > 0  # generator and discriminator train the one table
    assert 0 < logs["replaced_share"] < 0.5 and logs["loss_discriminator"] > 0
    with pytest.raises(ConfigError, match="generator_fraction"):
        ddp_text_worker.build("rtd", {"generator_fraction": 1.5})


def test_two_processes_give_the_loss_and_gradients_of_one(tmp_path):
    cases = [("rtd", "rtd", {"generator_fraction": 0.5, "masking": {"probability": 0.3}})]
    mp.spawn(ddp_text_worker.worker, args=(2, str(tmp_path / "init"), str(tmp_path), cases), nprocs=2, join=True)
    ddp_text_worker.worker(0, 1, str(tmp_path / "unused"), str(tmp_path), cases)
    two = torch.load(tmp_path / "world2.pt", weights_only=True)
    one = torch.load(tmp_path / "world1.pt", weights_only=True)
    assert two["rtd"]["loss"].item() == pytest.approx(one["rtd"]["loss"].item(), abs=1e-4)
    assert any(k.startswith("head.generator.") for k in one["rtd"]["grads"])
    for name, g in one["rtd"]["grads"].items():
        torch.testing.assert_close(two["rtd"]["grads"][name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_recipe_twin_resumes_bit_for_bit_and_runs_in_bf16(tmp_path):
    full = tmp_path / "full"
    train(TrainConfig.from_file(RECIPE), full)
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in lines] == [1, 2, 3, 4]
    out = tmp_path / "run"
    shutil.copytree(full, out)
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step_0000004")
    (out / "checkpoints" / "latest").write_text("step_0000002\n")
    train(TrainConfig.from_file(RECIPE), out, resume=True)
    a, b = load_file(str(out / "model" / "model.safetensors")), load_file(str(full / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(k.startswith("head") for k in a), "only the discriminator is the model"
    data = TrainConfig.from_file(RECIPE).to_dict()
    data.update(precision="bf16")
    data["stages"][0]["steps"] = 2
    summary = train(TrainConfig.from_dict(data), tmp_path / "bf16")
    assert summary["global_steps"] == 2 and 0 < summary["final_loss"] < 100
