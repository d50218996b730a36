"""Evaluations the trainer runs before and after a stage (a registry).

A stage lists them (``evaluate: [{name: synonym-linking, options: {...}}]``); each is measured on the stage's dataset
before the first step and after the last, in float32 and eval mode, and written to ``metrics.jsonl`` (``evaluation``,
``when``: ``before`` / ``after``) and ``summary.json`` (``evaluations``). Register one with
``@register_evaluation(name, Options)`` on ``fn(model, dataset, options) -> dict[str, float]``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry
from medvl.train.bank import embed_texts
from medvl.train.config import EvalConfig

__all__ = ["EVALUATIONS", "SynonymLinkingOptions", "register_evaluation", "run_evaluations", "synonym_linking"]

#: name -> (typed options class, fn(model, dataset, options) -> metrics)
EVALUATIONS: Registry[tuple[type[Config], Callable[..., dict[str, Any]]]] = Registry(
    "evaluation",
    builtins=("medvl.train.evaluations", "medvl.train.heldout", "medvl.train.text.evaluations"))  # new modules here


def register_evaluation(name: str, options: type[Config]):
    """Register ``fn(model, dataset, options) -> dict`` (numbers; ``options`` an instance of ``options``)."""

    def decorator(fn):
        EVALUATIONS.add(name, (options, fn))
        return fn

    return decorator


@contextmanager
def _max_length(tower: Any, max_length: int | None):
    """Evaluate with another tokenizer truncation than the one the tower trains with."""
    if max_length is None:
        yield
        return
    if not hasattr(tower, "max_length"):
        raise ConfigError(f"evaluation option max_length: the {type(tower).__name__} tower has no max_length")
    before = tower.max_length
    tower.max_length = max_length
    try:
        yield
    finally:
        tower.max_length = before


@dataclass
class SynonymLinkingOptions(Config):
    """Options of ``synonym-linking``.

    Attributes:
        modality: the tower that embeds queries and candidates.
        max_queries: use the first N held-out queries (0: all).
        batch_size: texts per forward pass.
        max_length: tokens per text when evaluating (default: the tower's, i.e. the training truncation).
        ks: the recalls reported.
    """

    modality: str = "text"
    max_queries: int = 0
    batch_size: int = 256
    max_length: int | None = None
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])


@register_evaluation("synonym-linking", SynonymLinkingOptions)
def synonym_linking(model: Any, dataset: Any, options: SynonymLinkingOptions) -> dict[str, Any]:
    """Recall@k of retrieving each held-out synonym's concept among the names of every concept.

    Needs a dataset with ``linking_queries`` (``(text, group index)``) and ``group_texts`` (one name per group):
    ``graph-groups`` with ``holdout: true``.
    """
    queries = getattr(dataset, "linking_queries", None)
    names = getattr(dataset, "group_texts", None)
    if not queries or names is None:
        raise ConfigError("evaluation 'synonym-linking' needs held-out queries (dataset 'graph-groups' with holdout)")
    queries = queries[: options.max_queries] if options.max_queries else queries

    def encode(texts: list[str]) -> torch.Tensor:
        return model.encode(options.modality, texts)

    with _max_length(model.towers[options.modality], options.max_length):
        cand = embed_texts(encode, names, options.batch_size)
        q = embed_texts(encode, [t for t, _ in queries], options.batch_size)
    target = torch.tensor([g for _, g in queries], device=q.device)
    sims = q @ cand.t()
    rank = (sims > sims.gather(1, target[:, None])).sum(1)
    recall = {f"r@{k}": round(float((rank < k).float().mean()), 4) for k in options.ks}
    return {"queries": len(queries), "candidates": len(names), **recall}


def run_evaluations(model: torch.nn.Module, dataset: Any, configs: list[EvalConfig]) -> dict[str, dict[str, Any]]:
    """Every evaluation of ``configs`` on ``model`` (eval mode, no gradients, float32); training flags restored."""
    built = []
    for cfg in configs:
        opt_cls, fn = EVALUATIONS.get(cfg.name)
        try:
            built.append((cfg.name, fn, opt_cls.from_dict(cfg.options)))
        except ConfigError as exc:
            raise ConfigError(f"evaluation '{cfg.name}': {exc}") from None
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            return {name: fn(model, dataset, opts) for name, fn, opts in built}
    finally:
        for module, mode in modes.items():
            module.training = mode
