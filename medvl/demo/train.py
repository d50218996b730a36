"""Demo step ``train``: a real small training run on BreastMNIST, then zero-shot on its held-out test split."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np

from medvl.demo.layout import TRAIN_MODEL, TRAIN_RECIPE
from medvl.demo.steps import demo_step
from medvl.workspace import Workspace

#: the classes of the zero-shot test and the concepts whose names describe them (label 0 = malignant): breast cancer
#: (DOID:1612); benign neoplasm of breast (ICD10CM:D24, the bundled DO files have no breast benign neoplasm term) and
#: breast fibroadenoma (DOID:1618)
CLASSES = {"malignant": ["DOID:1612"], "benign": ["ICD10CM:D24", "DOID:1618"]}


def zero_shot_breastmnist(model: Any, split: str = "test") -> dict[str, Any]:
    """Zero-shot BreastMNIST with prompts from the knowledge graph: balanced accuracy and AUC (malignant positive).

    The images go through the model's own transform (the one its checkpoint records from training).
    """
    import torch
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from medvl.knowledge import default_graph
    from medvl.models.transforms import image_transform
    from medvl.resources import bundled
    from medvl.tasks.zeroshot.classifier import ZeroShotClassifier, class_embeddings
    from medvl.train.data import ULTRASOUND_TEMPLATES, class_captions

    graph = default_graph()
    templates = [t for t in ULTRASOUND_TEMPLATES if t != "{}"]
    prompts = {name: class_captions(graph, ids, templates, definitions=False) for name, ids in CLASSES.items()}
    clf = ZeroShotClassifier(list(prompts), class_embeddings(model, prompts), list(prompts))
    with np.load(bundled("breastmnist")) as data:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1).astype(int)
    with torch.inference_mode():
        emb = model.encode_image(image_transform(images, model.image_transform())).float().numpy()
    proba = clf.predict_proba(emb)
    pred = proba.argmax(1)  # column 0 = malignant = label 0
    return {
        "split": split, "n": int(len(labels)), "prompts_per_class": {k: len(v) for k, v in prompts.items()},
        "balanced_accuracy": round(float(balanced_accuracy_score(labels, pred)), 4),
        "auc": round(float(roc_auc_score(labels == 0, proba[:, 0])), 4),
        "chance": {"balanced_accuracy": 0.5, "auc": 0.5},
    }


def _records_its_training(folder: Any) -> bool:
    """Whether an earlier demo's model records the preprocessing and domain of its training data (a model trained
    before checkpoints recorded them is trained again: inference would not know its transform)."""
    from medvl.models.checkpoint import read_checkpoint_config

    meta = read_checkpoint_config(folder)
    return bool((meta.get("domains") or {}).get("image")) and "image" in (meta.get("preprocessing") or {})


# needs the graph: captions and zero-shot prompts come from the disease graph the graph step builds (and caches)
@demo_step("train", "train an image/text model on BreastMNIST with graph captions; zero-shot its test split",
           needs=("graph",))
def step_train(ws: Workspace) -> dict[str, Any]:
    from medvl.atomic import atomic_dir, atomic_write_json
    from medvl.models import create_model
    from medvl.models.checkpoint import is_checkpoint
    from medvl.resources import config_dir
    from medvl.train import TrainConfig, train
    from medvl.train.state import latest_checkpoint

    target = ws.models / TRAIN_MODEL
    record_path = ws.runs / TRAIN_MODEL / "demo_record.json"
    cfg = TrainConfig.from_file(config_dir() / TRAIN_RECIPE)
    if is_checkpoint(target) and record_path.is_file() and _records_its_training(target):
        import json

        return {**json.loads(record_path.read_text()), "reused": True}
    run_dir = ws.runs / TRAIN_MODEL
    summary = train(cfg, run_dir, resume=latest_checkpoint(run_dir) is not None)  # an interrupted demo goes on
    with atomic_dir(target) as tmp:
        shutil.copytree(run_dir / "model", tmp, dirs_exist_ok=True)
    model = create_model(target)
    record = {
        "model": str(target.relative_to(ws.root)),
        "train": {k: summary[k] for k in ("global_steps", "final_loss", "seconds")},
        "preprocessing": model.image_transform().label(),  # saved in the checkpoint: what inference applies
        "domain": model.domain("image").label() if model.domain("image") else None,
        "zero_shot": zero_shot_breastmnist(model),
    }
    atomic_write_json(record_path, record)
    return record
