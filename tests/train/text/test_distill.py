"""The distill objective: sentence and token distillation, truncated students, DDP, resume, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from medvl.errors import ConfigError
from medvl.models import create_model
from medvl.models.multimodal import ModelConfig
from medvl.resources import config_dir
from medvl.train import TrainConfig, train
from tests.train.text import ddp_text_worker

RECIPE = config_dir() / "recipes" / "text-distill-tiny.yaml"


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    train(TrainConfig.from_file(RECIPE), out)
    return out


def test_student_moves_towards_the_teacher_and_resumes_bit_for_bit(distill_run, tmp_path):
    lines = [json.loads(x) for x in (distill_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss_cosine"] < lines[0]["loss_cosine"] and all(r["loss_token_kl"] > 0 for r in lines)
    out = tmp_path / "run"
    shutil.copytree(distill_run, out)
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step_0000004")
    (out / "checkpoints" / "latest").write_text("step_0000002\n")
    train(TrainConfig.from_file(RECIPE), out, resume=True)
    a, b = _weights(out / "model"), _weights(distill_run / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_teacher_is_refused(distill_run, tmp_path, monkeypatch):
    teacher = create_model("tiny-clip", random_weights=True)
    with torch.no_grad():
        next(teacher.towers["text"].parameters()).add_(1.0)
    teacher.save(tmp_path / "other")
    out = tmp_path / "run"
    shutil.copytree(distill_run, out)
    (out / "checkpoints" / "latest").write_text("step_0000002\n")
    data = TrainConfig.from_file(RECIPE).to_dict()
    data["stages"][0]["objective_options"]["teacher"] = str(tmp_path / "other")
    with pytest.raises(ConfigError, match="trained with another teacher"):
        train(TrainConfig.from_dict(data), out, resume=True)


def test_a_truncated_student_keeps_the_teachers_spread_layers(tmp_path):
    teacher = create_model(
        ModelConfig.from_dict(
            {
                "towers": {"text": {"name": "hf-text-tiny", "options": {"layers": 4}, "projection": "none"}},
                "embed_dim": 32,
            }
        ),
        random_weights=True,
    )
    teacher.save(tmp_path / "t")
    from medvl.models.text import truncate_layers

    model = create_model(tmp_path / "t", random_weights=True).towers["text"].model
    kept = truncate_layers(model, 2, "spread")
    assert kept == [0, 3] and len(model.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    src = create_model(tmp_path / "t", random_weights=True).towers["text"].model
    torch.testing.assert_close(model.encoder.layer[1].output.dense.weight, src.encoder.layer[3].output.dense.weight)
    with pytest.raises(ConfigError, match="layers must be within 1..2"):
        truncate_layers(model, 3, "lowest")


def test_incompatible_widths_without_a_projection_and_token_kl_across_tokenizers_are_errors(tmp_path):
    data = TrainConfig.from_file(RECIPE).to_dict()
    data["stages"][0]["objective_options"].update(projection=False, token_weight=0.0)
    with pytest.raises(ConfigError, match="16-d and the teacher's 32-d; set projection: true"):
        train(TrainConfig.from_dict(data), tmp_path / "a")
    data = TrainConfig.from_file(RECIPE).to_dict()
    data["model_config"]["towers"]["text"]["options"]["vocab"] = {"sources": ["doid_top_nodes"]}
    with pytest.raises(ConfigError, match="token distributions need the teacher's tokenizer"):
        train(TrainConfig.from_dict(data), tmp_path / "b")


def test_two_processes_give_the_loss_and_gradients_of_one(tmp_path):
    cases = [
        ("distill", "distill", {"teacher": "tiny-clip", "teacher_random_weights": True, "token_weight": 0.5}),
        ("distill-mse", "distill", {"teacher": "tiny-clip", "teacher_random_weights": True, "loss": "mse"}),
    ]
    mp.spawn(ddp_text_worker.worker, args=(2, str(tmp_path / "init"), str(tmp_path), cases), nprocs=2, join=True)
    ddp_text_worker.worker(0, 1, str(tmp_path / "unused"), str(tmp_path), cases)
    two = torch.load(tmp_path / "world2.pt", weights_only=True)
    one = torch.load(tmp_path / "world1.pt", weights_only=True)
    for case in one:
        assert two[case]["loss"].item() == pytest.approx(one[case]["loss"].item(), abs=1e-5), case
        assert set(two[case]["grads"]) == set(one[case]["grads"]) and len(one[case]["grads"]) > 10
        assert not any(k.startswith("teacher.") for k in one[case]["grads"])
        for name, g in one[case]["grads"].items():
            torch.testing.assert_close(two[case]["grads"][name], g, atol=1e-5, rtol=1e-4, msg=f"{case}: {name}")


def test_bf16_distillation_trains(tmp_path):
    data = TrainConfig.from_file(RECIPE).to_dict()
    data.update(precision="bf16")
    data["stages"][0].update(steps=2, grad_accum=2)
    summary = train(TrainConfig.from_dict(data), tmp_path / "run")
    assert summary["precision"] == "bf16" and summary["global_steps"] == 2 and 0 < summary["final_loss"] < 3
