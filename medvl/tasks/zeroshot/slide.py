"""Slide-level zero-shot diagnosis from a slide's tile embeddings (joint space), with per-tile scores for heatmaps.

Three pooling rules, chosen by name from a registry:

- ``mean``: classify the mean of the tile embeddings.
- ``topk``: MI-Zero (CONCH): per class, average the k highest tile logits, then softmax over classes.
- ``keep``: KEEP's rule: classify every tile against the classes plus a Normal class; detection is the fraction of
  tumour (non-normal) tiles; the subtype is the class with the largest tile fraction among tumour tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvl.errors import ConfigError, InputError
from medvl.tasks.vectors import l2_normalise, softmax
from medvl.tasks.zeroshot.classifier import NORMAL_ID, ZeroShotClassifier


@dataclass
class SlidePrediction:
    """Slide-level result.

    Attributes:
        class_ids: classes scored at slide level (without the Normal class).
        proba: slide-level probability per class.
        tile_scores: ``[N, C']`` per-tile probabilities (C' includes Normal for the KEEP rule) for heatmaps.
        tile_class_ids: the columns of ``tile_scores``.
        method: pooling rule.
        extra: rule-specific figures (tumour fraction, class fractions, detection).
    """

    class_ids: list[str]
    proba: np.ndarray
    tile_scores: np.ndarray
    tile_class_ids: list[str]
    method: str
    extra: dict[str, Any] = field(default_factory=dict)


def _mean_pool(clf: ZeroShotClassifier, tiles: np.ndarray, **_: Any) -> SlidePrediction:
    slide = l2_normalise(tiles.mean(axis=0, keepdims=True))
    return SlidePrediction(clf.class_ids, clf.predict_proba(slide)[0], clf.predict_proba(tiles), clf.class_ids,
                           "mean")


def _topk_pool(clf: ZeroShotClassifier, tiles: np.ndarray, topk: int = 50, **_: Any) -> SlidePrediction:
    logits = clf.similarities(tiles) / clf.temperature
    k = max(1, min(topk, len(tiles)))
    top = -np.sort(-logits, axis=0)[:k]
    proba = softmax(top.mean(axis=0))
    return SlidePrediction(clf.class_ids, proba, softmax(logits), clf.class_ids, "topk", {"k": k})


def _keep_rule(clf: ZeroShotClassifier, tiles: np.ndarray, detect_threshold: float = 0.5,
               normal_id: str = NORMAL_ID, **_: Any) -> SlidePrediction:
    if normal_id not in clf.class_ids:
        raise ConfigError(f"the KEEP rule needs a '{normal_id}' class among the classifier's classes")
    tile_proba = clf.predict_proba(tiles)
    normal = clf.class_ids.index(normal_id)
    tumour_cols = [i for i in range(len(clf.class_ids)) if i != normal]
    winners = tile_proba.argmax(axis=1)
    tumour = winners != normal
    fractions = np.array([(winners == i).mean() for i in tumour_cols])
    tumour_fraction = float(tumour.mean())
    # slide probability over tumour classes: share of tumour tiles won by each class
    proba = fractions / fractions.sum() if fractions.sum() > 0 else np.full(len(tumour_cols), 1 / len(tumour_cols))
    extra = {"tumour_fraction": tumour_fraction, "detected": tumour_fraction >= detect_threshold,
             "detect_threshold": detect_threshold,
             "class_fractions": {clf.class_ids[i]: float(f) for i, f in zip(tumour_cols, fractions, strict=True)}}
    return SlidePrediction([clf.class_ids[i] for i in tumour_cols], proba, tile_proba, clf.class_ids, "keep", extra)


def keep_decision(record: dict[str, Any], pred: SlidePrediction) -> dict[str, Any]:
    """The slide's decision record under the KEEP rule: no tumour detected means no subtype.

    The subtype of a slide whose tumour fraction is below the detection threshold is not a finding: the record
    abstains and says why, instead of naming a subtype next to ``detected: false``.
    """
    if pred.method != "keep" or pred.extra.get("detected", True):
        return record
    reason = (f"no tumour detected: tumour fraction {pred.extra['tumour_fraction']:.3f} is below the detection "
              f"threshold {pred.extra['detect_threshold']:g}")
    return {**record, "prediction": None, "name": None, "abstained": True, "backed_off": False, "implies": [],
            "abstain_reason": reason}


POOLING: dict[str, Callable[..., SlidePrediction]] = {"mean": _mean_pool, "topk": _topk_pool, "keep": _keep_rule}


def slide_zeroshot(tiles: np.ndarray, classifier: ZeroShotClassifier, method: str = "topk",
                   **options: Any) -> SlidePrediction:
    """Slide-level zero-shot classification.

    Args:
        tiles: ``[N, D]`` joint-space tile embeddings of one slide.
        classifier: the classes (for ``keep`` it must include the Normal class, id ``normal``).
        method: "mean", "topk" or "keep".
        **options: ``topk`` (k for MI-Zero), ``detect_threshold`` (KEEP tumour fraction for a positive slide).
    """
    if method not in POOLING:
        raise ConfigError(f"unknown slide pooling '{method}' (known: {', '.join(POOLING)})")
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim != 2 or len(tiles) == 0:
        raise InputError(None, f"expected [N, D] tile embeddings with N > 0, got shape {tiles.shape}")
    return POOLING[method](classifier, tiles, **options)
