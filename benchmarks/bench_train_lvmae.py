"""LV-MAE (``objective: masked_embedding``) on real BreastMNIST images cut into bags of patch embeddings.

Each 28x28 image is a bag of 49 patches of 4x4 pixels (the patch's pixels are its embedding, 2-D positions from the
patch grid); labels are the real ones (0 = malignant). Arms, same run, same tower shape (bag transformer, 2 layers,
width 64), same steps: a linear probe (train split -> test split, AUC) on

- mean pooling of the patch embeddings (no training);
- the untrained bag tower (random init);
- LV-MAE bag embeddings (class token after masked-embedding pre-training, labels never seen), mask 0.75 in 2x2
  blocks of the patch grid;
- the same bag tower trained from scratch on the labels (``supervised`` objective), probed the same way.

Then the masking ratio sweep: LV-MAE at ratios 0.25 / 0.5 / 0.75 / 0.9 (blocks) and 0.75 at random, with the held-out
masked reconstruction loss (test bags, fixed masks, normalised targets: predicting the mean scores 1.0) and the
probe AUC of each.

Run: flock /tmp/medvl-heavy.lock .venv/bin/python benchmarks/bench_train_lvmae.py [--steps 400 --seeds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.tasks.probe import LinearProbe  # noqa: E402
from medvl.train import TrainConfig, train  # noqa: E402
from medvl.train.data import pad_bags  # noqa: E402
from medvl.train.data.bags import BreastMNISTBagOptions, BreastMNISTBags  # noqa: E402

TOWER = {"name": "bag-transformer", "options": {"in_dim": 16, "hidden": 64, "layers": 2, "heads": 4, "pos_dim": 2,
                                                 "pos_scale": 4.0}}


def config(objective: str, steps: int, seed: int, mask: dict | None = None) -> TrainConfig:
    stage = {"name": objective, "objective": objective, "inputs": ["bag"], "losses": [], "steps": steps,
             "lr": 1e-3, "warmup_steps": 20}
    if objective == "masked_embedding":
        stage["objective_options"] = {"mask": mask or {"ratio": 0.75, "mode": "block", "block": 2},
                                      "decoder_hidden": 64, "decoder_heads": 4}
    return TrainConfig.from_dict({
        "recipe": "lvmae-bench", "seed": seed, "threads": 1, "log_every": 50, "checkpoint_every": 10_000,
        "tensorboard": False, "model_config": {"towers": {"bag": TOWER}, "embed_dim": 32},
        "data": {"dataset": "breastmnist-bags", "options": {"split": "train"}, "batch_size": 64},
        "stages": [stage],
    })


def embed(tower, ds: BreastMNISTBags) -> np.ndarray:
    tower.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(ds), 128):
            bag = pad_bags([ds.item(i, torch.Generator())["bag"] for i in range(start, min(start + 128, len(ds)))])
            out.append(tower.encode(bag).float().numpy())
    return np.concatenate(out)


def probe(train_x, train_y, test_x, test_y) -> float:
    return round(LinearProbe(C=0.5).fit(train_x, train_y).evaluate(test_x, test_y)["auc"], 4)


def heldout_reconstruction(run: Path, tower_model, cfg: TrainConfig, test: BreastMNISTBags) -> float:
    """Masked reconstruction loss of the trained decoder on the test bags (fixed masks)."""
    from medvl.train.lvmae import MaskedEmbeddingObjective

    obj = MaskedEmbeddingObjective(tower_model, cfg.stages[0], test, cfg.seed)
    # the end-of-stage checkpoint holds no objective head: take the decoder of the last step checkpoint
    for folder in sorted((run / "checkpoints").glob("step_*"), reverse=True):
        state = torch.load(folder / "trainer_state.pt", weights_only=True)
        if state.get("head") is not None:
            obj.head.load_state_dict(state["head"])
            break
    bag = pad_bags([test.item(i, torch.Generator())["bag"] for i in range(len(test))])
    torch.manual_seed(1234)
    return round(obj.reconstruction_loss({"bag": bag}), 4)


def run_arm(objective: str, steps: int, seed: int, tmp: Path, data: tuple, mask: dict | None = None) -> dict:
    from medvl.models import create_model

    train_ds, test_ds = data
    cfg = config(objective, steps, seed, mask)
    name = f"{objective}-{seed}-{(mask or {}).get('ratio', '')}-{(mask or {}).get('mode', '')}"
    t0 = time.perf_counter()
    summary = train(cfg.replace(checkpoint_every=steps - 1) if objective == "masked_embedding" else cfg,
                    tmp / name)
    seconds = time.perf_counter() - t0
    model = create_model(summary["model"])
    tower = model.towers["bag"]
    rec = {"auc": probe(embed(tower, train_ds), train_ds.labels, embed(tower, test_ds), test_ds.labels),
           "train_s": round(seconds, 1), "final_train_loss": round(summary["final_loss"], 4)}
    if objective == "masked_embedding":
        rec["heldout_reconstruction"] = heldout_reconstruction(tmp / name, model, cfg, test_ds)
    return rec


def spread(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--sweep-steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train_ds = BreastMNISTBags(BreastMNISTBagOptions(split="train"))
    test_ds = BreastMNISTBags(BreastMNISTBagOptions(split="test"))
    data = (train_ds, test_ds)
    mean_auc = probe(train_ds.patches.mean(1), train_ds.labels, test_ds.patches.mean(1), test_ds.labels)
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig

    random_auc = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        tower = create_model(ModelConfig.from_dict({"towers": {"bag": TOWER}, "embed_dim": 32}),
                             random_weights=True).towers["bag"]  # the untrained arm: random by intent
        random_auc.append(probe(embed(tower, train_ds), train_ds.labels, embed(tower, test_ds), test_ds.labels))
    arms = {"mean_pooling": {"auc": mean_auc}, "untrained_tower": spread(random_auc)}
    with tempfile.TemporaryDirectory() as tmp:
        for objective, label in (("masked_embedding", "lvmae"), ("supervised", "supervised_from_scratch")):
            runs = [run_arm(objective, args.steps, s, Path(tmp), data) for s in range(args.seeds)]
            arms[label] = {**spread([r["auc"] for r in runs]), "train_s": [r["train_s"] for r in runs],
                           **({"heldout_reconstruction": [r["heldout_reconstruction"] for r in runs]}
                              if objective == "masked_embedding" else {})}
        sweep = {}
        for ratio, mode in ((0.25, "block"), (0.5, "block"), (0.75, "block"), (0.9, "block"), (0.75, "random")):
            mask = {"ratio": ratio, "mode": mode, "block": 2}
            r = run_arm("masked_embedding", args.sweep_steps, 0, Path(tmp), data, mask)
            sweep[f"{mode}_{ratio}"] = {k: r[k] for k in ("heldout_reconstruction", "auc", "final_train_loss")}
    figures = {"lvmae_auc": arms["lvmae"]["mean"], "mean_pool_auc": mean_auc,
               "supervised_auc": arms["supervised_from_scratch"]["mean"],
               "untrained_auc": arms["untrained_tower"]["mean"], "arms": arms, "mask_ratio_sweep": sweep,
               "steps": args.steps, "seeds": args.seeds}
    write_record(
        "train_lvmae_breastmnist", baseline="linear probe on mean-pooled patch embeddings, same split, same run",
        figures=figures, ratio=arms["lvmae"]["mean"] / mean_auc, ratio_meaning="LV-MAE probe AUC / mean-pooling AUC",
        target="LV-MAE > mean pooling", passed=arms["lvmae"]["mean"] > mean_auc,
        notes="BreastMNIST 546 train / 156 test images as bags of 49 4x4-pixel patches; 1 thread on 2 shared cores; "
              "reconstruction loss is on normalised targets (1.0 = predicting the mean).")


if __name__ == "__main__":
    main()
