"""``medvl eval``: one report folder with JSON metrics and the plots, from a config file."""

from __future__ import annotations

import json

import numpy as np
import yaml

from medvl.io.embeddings import EmbeddingSet, save_embeddings
from medvl.resources import bundled
from medvl.tasks.metrics import retrieval_metrics
from tests.conftest import assert_clean_error, run_cli


def test_retrieval_metrics_by_hand():
    sim = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.5]])
    rel = np.array([[False, True, True], [True, False, False]])
    m = retrieval_metrics(sim, rel, ks=(1, 2))
    assert m["R@1"] == 0.0 and m["R@2"] == 0.5 and m["median_rank"] == 2.5
    assert m["mAP"] == np.mean([(1 / 2 + 2 / 3) / 2, 1 / 3])


def test_eval_report_folder(gbsg2_csv, tmp_path):
    with np.load(bundled("breastmnist")) as d:  # pixels as frozen "embeddings": a real labelled set
        parts = {p: (d[f"{p}_images"].reshape(-1, 784)[:, ::8] / 255.0, d[f"{p}_labels"].reshape(-1)) for p in
                 ("train", "test")}
    X = np.concatenate([parts["train"][0], parts["test"][0]])
    y = np.concatenate([parts["train"][1], parts["test"][1]])
    split = np.array(["train"] * len(parts["train"][1]) + ["test"] * len(parts["test"][1]))
    save_embeddings(tmp_path / "emb.npz", EmbeddingSet(X, labels=y, split=split))
    save_embeddings(tmp_path / "q.npz", EmbeddingSet(parts["test"][0], labels=parts["test"][1]))
    save_embeddings(tmp_path / "g.npz", EmbeddingSet(parts["train"][0], labels=parts["train"][1]))
    cfg = {"out": "report",
           "survival": {"table": str(gbsg2_csv), "time": "time", "event": "event", "covariates": ["age", "pnodes"],
                        "cv": 3},
           "probe": {"embeddings": "emb.npz", "C": 0.1},
           "retrieval": {"queries": "q.npz", "gallery": "g.npz"}}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    r = run_cli("eval", "--config", tmp_path / "eval.yaml", "--out", tmp_path / "report", "--json")
    assert r.returncode == 0, r.stderr
    rep = r.json()
    assert 0.6 < rep["probe"]["metrics"]["auc"] <= 1 and 0.5 < rep["retrieval"]["metrics"]["R@10"] <= 1
    assert 0.6 < rep["survival"]["metrics"]["harrell_c"] < 0.8
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"metrics.json", "kaplan_meier.png", "probe_roc.png", "probe_calibration.png", "retrieval_recall.png",
            "eval_config.json"} <= files
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["probe"]["metrics"] == rep["probe"]["metrics"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"out": "x", "probe": {"embedings": "emb.npz"}}))
    assert_clean_error(run_cli("eval", "--config", tmp_path / "bad.yaml"), "embedings")


def test_the_shipped_gbsg2_config_reads_the_table_the_demo_writes(tmp_path):
    """Before: ``table: ../../tables/gbsg2.csv`` pointed at no file (relative to medvl/configs/eval/)."""
    from medvl.demo.tasks import export_gbsg2
    from medvl.resources import config_dir
    from medvl.workspace import Workspace

    ws = Workspace.resolve(tmp_path / "ws", create=True)
    export_gbsg2(ws)
    config = config_dir() / "eval" / "gbsg2_survival.yaml"
    r = run_cli("eval", "--config", config, "--workspace", ws.root, "--out", tmp_path / "rep", "--json")
    assert r.returncode == 0, r.stderr
    survival = r.json()["survival"]["metrics"]
    assert 0.6 < survival["harrell_c"] < 0.8
    assert_clean_error(run_cli("eval", "--config", config, "--workspace", tmp_path / "empty", "--out",
                               tmp_path / "rep2"), "gbsg2.csv", "not found")
