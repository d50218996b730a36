"""Held-out evaluation inside a run (the ``heldout`` evaluation): a ``val`` or ``test`` split of the training data.

On the split's items (a dataset with ``heldout(split)``, e.g. ``manifest``) it measures:

- ``recall@1`` / ``recall@5`` / ``recall@10``: cross-modal retrieval between each item and its own text, the mean
  of the two directions (``image_to_text_recall@k``, ``text_to_image_recall@k`` reported too; items sharing a text
  share its relevance);
- ``zero_shot_balanced_accuracy``: each single-label item classified among the classes by text prompts (concept
  labels through the graph's names and synonyms and the templates; other labels by their own name);
- ``auc`` and ``balanced_accuracy``: the label task, a linear probe (:class:`medvl.tasks.probe.LinearProbe`) fitted
  on the training split's embeddings and scored on the held-out split (macro over labels when multi-label).

The trainer runs it before and after a stage and every ``eval_every`` steps; the figures land in ``metrics.jsonl``
and ``summary.json`` under these names, and ``best_metric`` keeps the best checkpoint by one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.train.data.registry import collate
from medvl.train.evaluations import register_evaluation

__all__ = ["HeldoutOptions", "heldout"]


@dataclass
class HeldoutOptions(Config):
    """Options of ``heldout``.

    Attributes:
        split: the held-out split (``val``, ``test``).
        batch_size: items per forward pass.
        ks: the recalls reported.
        templates: zero-shot prompt templates (a set name such as ``pathology`` / ``radiology``, or strings).
        max_train: training items embedded for the linear probe (evenly spaced over the split).
    """

    split: str = "test"
    batch_size: int = 64
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    templates: list[str] = field(default_factory=lambda: ["{}"])
    max_train: int = 512


class _Encoder:
    """A per-evaluation handle on the model: text caches keyed by it die with it (the weights keep changing)."""

    def __init__(self, model: Any):
        self.model = model

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode("text", texts)


def _embed(model: Any, dataset: Any, picks: list[int], batch_size: int) -> tuple[np.ndarray, list[str]]:
    device = next(model.parameters()).device
    field_name = dataset.field
    modality = dataset.fields[field_name]
    vectors, texts = [], []
    for start in range(0, len(picks), batch_size):
        batch = collate([dataset.item(k, None) for k in picks[start:start + batch_size]])
        vectors.append(model.encode(modality, batch[field_name].to(device)).float().cpu().numpy())
        texts += batch["text"]
    return np.concatenate(vectors), texts


def _recalls(model: Any, x: np.ndarray, texts: list[str], ks: list[int]) -> dict[str, float]:
    from medvl.tasks.metrics import retrieval_metrics
    from medvl.tasks.zeroshot.classifier import encode_texts

    unique = list(dict.fromkeys(texts))
    t = encode_texts(_Encoder(model), unique)
    relevant = np.array([[u == s for u in unique] for s in texts])  # [items, unique texts]
    sims = x @ t.T
    i2t = retrieval_metrics(sims, relevant, ks)
    t2i = retrieval_metrics(sims.T, relevant.T, ks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"image_to_text_recall@{k}"] = round(i2t[f"R@{k}"], 4)
        out[f"text_to_image_recall@{k}"] = round(t2i[f"R@{k}"], 4)
        out[f"recall@{k}"] = round((i2t[f"R@{k}"] + t2i[f"R@{k}"]) / 2, 4)
    return out


def _zero_shot(model: Any, dataset: Any, x: np.ndarray, picks: list[int], templates: list[str]) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    from medvl.tasks.zeroshot.classifier import ZeroShotClassifier, ZeroShotConfig

    single = [(n, dataset.labels_of(k)[0]) for n, k in enumerate(picks) if len(dataset.labels_of(k)) == 1]
    if not single or len(dataset.label_names) < 2:
        return {}
    tags = dataset.source.tags
    concepts = [c for c in dataset.label_names if tags is not None and tags.is_concept(c)]
    others = {c: [c] for c in dataset.label_names if c not in concepts}
    cfg = ZeroShotConfig(templates=list(templates))
    if concepts:
        clf = ZeroShotClassifier.from_graph(_Encoder(model), tags.graph, concepts, cfg, extra_classes=others)
    else:
        clf = ZeroShotClassifier.from_names(_Encoder(model), others, cfg)
    order = {c: i for i, c in enumerate(clf.class_ids)}
    pred = clf.similarities(x[[n for n, _ in single]]).argmax(1)
    truth = [order[tags.graph.resolve(lab) if lab in concepts else lab] for _, lab in single]
    return {"zero_shot_balanced_accuracy": round(float(balanced_accuracy_score(truth, pred)), 4),
            "zero_shot_items": len(single)}


def _label_task(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Linear probe per label column (one column: multiclass); the figures averaged over columns that can be
    scored (two classes present in training and held-out data)."""
    from medvl.tasks.probe import LinearProbe

    figures: dict[str, list[float]] = {"auc": [], "balanced_accuracy": []}
    for col in range(train_y.shape[1]):
        if len(np.unique(train_y[:, col])) < 2 or len(np.unique(y[:, col])) < 2:
            continue
        result = LinearProbe().fit(train_x, train_y[:, col]).evaluate(x, y[:, col])
        for name in figures:
            if name in result:
                figures[name].append(result[name])
    return {name: round(float(np.mean(v)), 4) for name, v in figures.items() if v}


def _targets(dataset: Any, picks: list[int]) -> np.ndarray:
    """``[N, 1]`` class indices (single-label) or ``[N, C]`` multi-hot labels."""
    labels = [dataset.target(k) for k in picks]
    if dataset.multilabel:
        return torch.stack(labels).numpy().astype(int)
    return np.asarray(labels, dtype=int)[:, None]


def _spaced(n: int, limit: int) -> list[int]:
    return list(range(n)) if n <= limit else np.linspace(0, n - 1, limit).round().astype(int).tolist()


@register_evaluation("heldout", HeldoutOptions)
def heldout(model: Any, dataset: Any, options: HeldoutOptions) -> dict[str, Any]:
    """Retrieval, zero-shot and label-task figures on the ``split`` of the training data."""
    if not hasattr(dataset, "heldout"):
        raise ConfigError(f"evaluation 'heldout' needs a dataset with held-out splits (e.g. 'manifest'), "
                          f"not {type(dataset).__name__}")
    test = dataset.heldout(options.split)
    picks = list(range(len(test)))
    x, texts = _embed(model, test, picks, options.batch_size)
    out: dict[str, Any] = {"split": options.split, "items": len(picks), **_recalls(model, x, texts, options.ks)}
    if test.label_names:
        out.update(_zero_shot(model, test, x, picks, options.templates))
        plain = dataset.heldout(dataset.opts.split)  # the training split without augmentation
        train_picks = [k for k in _spaced(len(plain), options.max_train) if plain.labels_of(k)]
        test_picks = [k for k in picks if test.labels_of(k)]
        if train_picks and test_picks:
            train_x, _ = _embed(model, plain, train_picks, options.batch_size)
            keep = [picks.index(k) for k in test_picks]
            out.update(_label_task(train_x, _targets(plain, train_picks), x[keep], _targets(test, test_picks)))
    return out
