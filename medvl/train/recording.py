"""What a trained model records about its data: the preprocessing and domain of each input, and which towers trained.

A training dataset declares ``preprocessing`` (modality -> its transform config: an
:class:`~medvl.models.transforms.ImageTransformConfig`, a ``CTPreprocessConfig``) and ``domains`` (modality ->
:class:`~medvl.models.domain.DataDomain`). The engine hands them to the model for each stage's inputs, so the
checkpoint it saves carries them and inference applies the same transform (:func:`medvl.models.create_model`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["record_training_data"]


def record_training_data(model: Any, dataset: Any, inputs: list[str]) -> list[str]:
    """Record on ``model`` what the stage's ``inputs`` are made of; returns the modalities whose tower trains.

    Call it after the stage's trainable parameters are chosen: a tower with a trainable parameter no longer holds
    random weights once the stage ran.
    """
    fields = getattr(dataset, "fields", {})
    preprocessing = getattr(dataset, "preprocessing", {}) or {}
    domains = getattr(dataset, "domains", {}) or {}
    trained = []
    for name in inputs:
        modality = fields.get(name)
        if modality is None or modality not in model.towers:
            continue
        trains = any(p.requires_grad for p in model.towers[modality].parameters())
        model.record_training(modality, preprocessing.get(modality), domains.get(modality), trained=trains)
        if trains:
            trained.append(modality)
    return trained
