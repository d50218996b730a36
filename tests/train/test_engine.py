"""The trainer end to end on the tiny recipes: outputs, exact resume, SIGKILL, bad input, two-stage, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medvl.errors import ConfigError
from medvl.resources import config_dir
from medvl.train import TrainConfig, TrainingDiverged, train
from tests.conftest import assert_clean_error, run_cli

KEEP = config_dir() / "tiny-keep.yaml"
TWO_STAGE = config_dir() / "tiny-two-stage.yaml"


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def keep_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("keep") / "run"
    train(TrainConfig.from_file(KEEP), out)
    return out


def test_keep_run_outputs(keep_run):
    from medvl.models import create_model

    summary = json.loads((keep_run / "summary.json").read_text())
    assert summary["global_steps"] == 6 and summary["recipe"] == "keep"
    lines = [json.loads(x) for x in (keep_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert all("loss_knowledge_group" in r and r["lr"] >= 0 for r in lines)
    model = create_model(keep_run / "model")
    emb = model.encode_text(["breast cancer", "fibroadenoma"])
    assert emb.shape == (2, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(2))
    assert json.loads((keep_run / "run_config.json").read_text())["recipe"] == "keep"


def test_resume_continues_bit_for_bit(keep_run, tmp_path):
    """Resuming from the step-3 checkpoint ends with exactly the weights of the uninterrupted run."""
    out = tmp_path / "run"
    shutil.copytree(keep_run, out)
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step_0000006")
    (out / "checkpoints" / "latest").write_text("step_0000003\n")
    train(TrainConfig.from_file(KEEP), out, resume=True)
    assert _same(_weights(out / "model"), _weights(keep_run / "model"))
    steps = [json.loads(x)["global_step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    cfg = TrainConfig.from_file(KEEP)
    cfg.stages[0].steps = 16
    cfg = cfg.replace(checkpoint_every=4, log_every=4, threads=1)  # bit-exact needs one thread count everywhere
    config = tmp_path / "long.yaml"
    cfg.to_file(config)
    reference = tmp_path / "reference"
    train(cfg, reference)

    out = tmp_path / "killed"
    env = {**os.environ, "MEDVL_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "medvl", "train", "--config", str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "latest").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it was killed"
    assert (out / "checkpoints" / "latest").exists()
    resumed = run_cli("train", "--config", config, "--out", out, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json()["global_steps"] == 16
    assert _same(_weights(out / "model"), _weights(reference / "model"))
    leftovers = [p for p in out.rglob("*") if "tmp-medvl" in p.name]
    assert leftovers == []


def test_two_stage_recipe(tmp_path):
    from medvl.models import create_model

    out = tmp_path / "run"
    summary = train(TrainConfig.from_file(TWO_STAGE).replace(keep_checkpoints=10), out)
    assert summary["stages"] == ["text-knowledge", "image-labels", "align-frozen-text"]
    stages = {json.loads(x)["stage"] for x in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == set(summary["stages"])
    # stage 3 trains only the image side: the text tower after stage 2 equals the final one
    after_stage2 = _weights(out / "checkpoints" / "step_0000006" / "model")
    final = _weights(out / "model")
    text_keys = [k for k in final if k.startswith(("towers.text", "projections.text"))]
    image_keys = [k for k in final if k.startswith("towers.image") and final[k].is_floating_point()]
    assert text_keys and all(torch.equal(final[k], after_stage2[k]) for k in text_keys)
    assert any(not torch.equal(final[k], after_stage2[k]) for k in image_keys)
    assert create_model(out / "model").encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 32)


def test_bf16_and_accumulation(tmp_path):
    cfg = TrainConfig.from_file(KEEP).replace(precision="bf16")
    cfg.stages[0].steps, cfg.stages[0].grad_accum = 2, 2
    from medvl.log import clear_warnings, collected_warnings

    clear_warnings()
    summary = train(cfg, tmp_path / "run")
    assert summary["global_steps"] == 2 and summary["precision"] == "bf16"
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    slow = [w for w in collected_warnings() if "without native bf16" in w]
    assert len(slow) == (0 if native else 1)  # a CPU that emulates bf16 is named, once


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(KEEP.read_text().replace("log_every: 1", "log_evry: 1"))
    with pytest.raises(ConfigError, match="log_evry"):
        TrainConfig.from_file(bad)
    bad.write_text(KEEP.read_text().replace("steps: 6", "steps: six"))
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig.from_file(bad)
    result = run_cli("train", "--config", bad, "--out", tmp_path / "o")
    assert_clean_error(result, "steps", "integer")


def test_resume_from_another_models_checkpoint_is_refused(keep_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(keep_run / "checkpoints", out / "checkpoints")
    other = TrainConfig.from_file(KEEP).replace(model_config=None, model="tiny-multimodal")
    other.stages[0].inputs = ["text", "text"]
    with pytest.raises(ConfigError, match="different model"):
        train(other, out, resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = TrainConfig.from_file(KEEP).replace(checkpoint_every=1)
    cfg.stages[0].lr, cfg.stages[0].warmup_steps = 1e30, 0
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss is nan|loss is inf"):
        train(cfg, out)
    latest = (out / "checkpoints" / "latest").read_text().strip()
    weights = _weights(out / "checkpoints" / latest / "model")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert not (out / "model").exists()


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_two_processes(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "run"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "medvl", "train", "--config", str(KEEP),
         "--out", str(out), "--json"],
        capture_output=True, text=True, env={**os.environ, "MEDVL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1, "only rank 0 prints the result"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_steps"] == 6
    assert (out / "model" / "model.safetensors").is_file()
