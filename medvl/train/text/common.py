"""What the text objectives share: the text tower, checks, a masked LM head and DDP-exact token means."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from medvl.errors import ConfigError
from medvl.train.config import StageConfig
from medvl.train.objectives import Objective

__all__ = ["LMHead", "TextObjective", "check_vocabulary", "concept_tagger", "global_mean"]


def check_vocabulary(tower: Any) -> int:
    """The tower's vocabulary size; a :class:`ConfigError` when its tokenizer has ids its embedding table lacks."""
    rows = tower.model.get_input_embeddings().weight.shape[0]
    size = len(tower.tokenizer)
    if size > rows:
        raise ConfigError(f"tokenizer and model vocabulary mismatch: the tokenizer has {size} tokens, the text "
                          f"tower's embedding table {rows} rows (resize the tower, e.g. with the 'vocab' option)")
    return rows


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count`` over every process: scaled so that DDP's gradient average gives the gradient of the global
    mean (the same loss and gradients for any number of processes)."""
    count = count.detach().float()
    world = 1
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world = dist.get_world_size()
        dist.all_reduce(count)
    return total * world / count.clamp_min(1.0)


def concept_tagger(tokenizer: Any, sources: list[str] | None, source: str) -> Any:
    """The tagger of concept masking: the concept-aware tokenizer's own, else one built from the graph."""
    if hasattr(tokenizer, "tagger"):
        return tokenizer.tagger
    from medvl.knowledge import BuildConfig, cached_graph
    from medvl.knowledge.tagger import ConceptTagger

    graph = cached_graph(BuildConfig(sources=sources) if sources else BuildConfig())
    return ConceptTagger.from_graph(graph, graph.subgraph_ids(source) if source else None)


class LMHead(nn.Module):
    """BERT's masked-LM head (dense, GELU, LayerNorm) with the decoder tied to the input embeddings; ``width``: the
    embeddings' width when the hidden states are narrower (ELECTRA's small generator)."""

    def __init__(self, hidden: int, vocab: int, eps: float = 1e-12, width: int | None = None):
        super().__init__()
        self.dense = nn.Linear(hidden, width or hidden)
        self.norm = nn.LayerNorm(width or hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, hidden: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), embeddings, self.bias)


class TextObjective(Objective):
    """Base of the text objectives: one text field, the ``text`` tower, the step for seeded masking."""

    n_inputs = 1

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__(model, stage, dataset, seed)
        self.field = stage.inputs[0]
        if self.modalities != ["text"]:
            raise ConfigError(f"stage '{stage.name}': the {stage.objective} objective trains a text tower; "
                              f"input '{self.field}' is {self.modalities[0]}")
        self.tower = model.towers["text"]
        if not hasattr(self.tower, "tokenizer") or not hasattr(self.tower, "model"):
            raise ConfigError(f"stage '{stage.name}': the {stage.objective} objective needs a Hugging Face text "
                              "tower (hf-text)")
        self.vocab = check_vocabulary(self.tower)
        self.seed = seed
        self.step = 0

    def used_prefixes(self) -> list[str]:
        return ["model.towers.text."]

    def prepare(self, dataset: Any) -> None:
        if self.stage.cache_frozen:
            raise ConfigError(f"stage '{self.stage.name}': cache_frozen does not apply to the {self.stage.objective} "
                              "objective (its inputs change every step); use freeze_layers alone")

    def before_step(self, step: int) -> None:
        self.step = step

    def hidden(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        device = next(self.tower.model.parameters()).device
        return self.tower.model(**{k: v.to(device) for k, v in inputs.items()}).last_hidden_state

    def embeddings(self) -> torch.Tensor:
        return self.tower.model.get_input_embeddings().weight
