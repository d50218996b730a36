"""The bag objectives through the trainer: LV-MAE (masked_embedding) and bag-Cox (bag_survival), and
``medvl survival fit --bags``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medvl.io.features import FeatureStore, TileTable
from medvl.train import TrainConfig, train
from tests.conftest import assert_clean_error


def _lvmae_config(steps=40, ratio=0.75, mode="block"):
    return TrainConfig.from_dict({
        "recipe": "lvmae", "seed": 0, "threads": 1, "log_every": 10, "checkpoint_every": 1000,
        "model_config": {"towers": {"bag": {"name": "bag-transformer", "options": {
            "in_dim": 16, "hidden": 32, "layers": 1, "heads": 2, "pos_dim": 2, "pos_scale": 4.0}}}, "embed_dim": 8},
        "data": {"dataset": "breastmnist-bags", "options": {"split": "train", "limit": 128}, "batch_size": 32},
        "stages": [{"name": "lvmae", "objective": "masked_embedding", "inputs": ["bag"], "losses": [],
                    "steps": steps, "lr": 2e-3, "objective_options": {
                        "mask": {"ratio": ratio, "mode": mode, "block": 2}, "decoder_hidden": 32,
                        "decoder_heads": 2}}],
    })


def test_lvmae_learns_to_rebuild_masked_patches(tmp_path):
    summary = train(_lvmae_config(), tmp_path / "run")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # normalised targets: predicting the mean scores 1.0; the model must do better and improve
    assert losses[-1] < losses[0] and losses[-1] < 0.9
    from medvl.models import create_model
    from medvl.train.data import pad_bags
    from medvl.train.data.bags import BreastMNISTBagOptions, BreastMNISTBags

    model = create_model(summary["model"])
    ds = BreastMNISTBags(BreastMNISTBagOptions(split="test", limit=4))
    bag = pad_bags([ds.item(i, torch.Generator())["bag"] for i in range(4)])
    with torch.inference_mode():
        emb = model.towers["bag"].encode(bag)
    assert emb.shape == (4, 32) and torch.isfinite(emb).all()


def test_masked_embedding_refuses_a_non_transformer_tower(tmp_path):
    from medvl.errors import ConfigError

    cfg = _lvmae_config(steps=1).to_dict()
    cfg["model_config"]["towers"]["bag"] = {"name": "bag-attention", "options": {"in_dim": 16, "hidden": 16}}
    with pytest.raises(ConfigError, match="bag-transformer"):
        train(TrainConfig.from_dict(cfg), tmp_path / "run")


# ------------------------------------------------------------------------------------------------ survival
def _planted_bags(folder, n=80, dim=8, seed=0):
    """Bags whose risk is the share of 'marked' items (first feature > 1): times drawn from that hazard."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        k = int(rng.integers(6, 14))
        feats = rng.standard_normal((k, dim)).astype(np.float32)
        share = rng.uniform(0, 1)
        marked = rng.random(k) < share
        feats[marked, 0] = 2.0 + rng.random(int(marked.sum()))
        feats[~marked, 0] = -1.0
        risk = 3.0 * marked.mean()
        t = rng.exponential(1.0 / (0.1 * np.exp(risk)))
        c = rng.uniform(0, 30)
        coords = np.stack([np.arange(k), np.zeros(k)], 1) * 256
        FeatureStore(folder / f"b{i}.h5").write(TileTable(coords, {"encoder": "test"}, feats))
        rows.append({"slide_id": f"b{i}", "time": min(t, c), "event": int(t <= c), "risk": risk,
                     "split": "test" if i % 4 == 0 else "train"})
    table = folder.parent / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def _cox_config(folder, table, batch, memory=0, sampler="shuffled", steps=40):
    return TrainConfig.from_dict({
        "recipe": "bag-survival", "seed": 0, "threads": 1, "log_every": 5, "checkpoint_every": 1000,
        "model_config": {"towers": {"bag": {"name": "bag-abmil", "options": {"in_dim": 8, "hidden": 8}}},
                         "embed_dim": 1},
        "data": {"dataset": "bags", "options": {"features": str(folder), "table": str(table), "time": "time",
                                                "event": "event", "exclude_split": "test"},
                 "batch_size": batch, "sampler": sampler},
        "stages": [{"name": "cox", "objective": "bag_survival", "inputs": ["bag"], "losses": [], "steps": steps,
                    "lr": 0.05, "objective_options": {"memory": memory}}],
    })


def _test_c(model_dir, folder, table):
    from medvl.models import create_model
    from medvl.tasks.survival.metrics import harrell_c
    from medvl.train.data.bags import BagFolder, BagFolderOptions
    from medvl.train.survival_bags import bag_risks

    ds = BagFolder(BagFolderOptions(features=str(folder), table=str(table), time="time", event="event",
                                    split="test", max_items=None))
    return harrell_c(ds.time, ds.event, bag_risks(create_model(model_dir), ds))


def test_one_bag_per_step_is_zero_and_accumulation_or_a_bank_learns(tmp_path):
    table = _planted_bags(tmp_path / "bags")
    one = train(_cox_config(tmp_path / "bags", table, batch=1), tmp_path / "one")
    logged = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == 0.0 for r in logged)  # the Cox loss of a single bag is zero: nothing to learn
    acc = train(_cox_config(tmp_path / "bags", table, batch=16), tmp_path / "acc")
    bank = train(_cox_config(tmp_path / "bags", table, batch=2, memory=32, sampler="event-balanced"),
                 tmp_path / "bank")
    from medvl.tasks.survival.metrics import harrell_c

    test = pd.read_csv(table).query("split == 'test'")
    oracle = harrell_c(test["time"], test["event"], test["risk"])  # the planted risk itself
    c_acc, c_bank = (_test_c(s["model"], tmp_path / "bags", table) for s in (acc, bank))
    assert one["final_loss"] == 0.0
    assert c_acc > oracle - 0.08 and c_bank > oracle - 0.08, (c_acc, c_bank, oracle)


def test_survival_fit_bags_cli_reports_held_out_metrics(tmp_path, cli):
    table = _planted_bags(tmp_path / "bags")
    res = cli("survival", "fit", "--bags", tmp_path / "bags", "--table", table, "--time", "time", "--event",
              "event", "--test-split", "test", "--batch-size", "16", "--steps", "40", "--lr", "0.05", "--out",
              tmp_path / "model", "--json")
    assert res.returncode == 0, res.stderr
    rec = res.json()
    from medvl.tasks.survival.metrics import harrell_c

    test = pd.read_csv(table).query("split == 'test'")
    oracle = harrell_c(test["time"], test["event"], test["risk"])
    assert rec["n_test"] == 20 and rec["test"]["harrell_c"] > oracle - 0.1, (rec["test"], oracle)
    assert {"uno_c", "mean_auc", "integrated_brier"} <= set(rec["test"]) and len(rec["risk_groups"]) == 2
    assert (tmp_path / "model" / "model" / "model.safetensors").is_file()
    bad = tmp_path / "bad.csv"
    pd.read_csv(table).assign(slide_id=lambda d: d["slide_id"] + "x").to_csv(bad, index=False)
    res = cli("survival", "fit", "--bags", tmp_path / "bags", "--table", bad, "--time", "time", "--event", "event",
              "--out", tmp_path / "bad_model")
    assert_clean_error(res, "no feature file")
    assert not (tmp_path / "bad_model" / "model").exists()
