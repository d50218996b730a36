"""Training the LexLIP lexicon head: ``objective: lexical`` on ``dataset: text-pairs``.

The model's text tower stays frozen; the objective's head (:class:`medvl.models.lexical.LexiconHead`, tied to the
tower's word embeddings) learns to weight vocabulary terms so that a query's sparse weights score its paired
document above the other documents of the batch: a symmetric InfoNCE over the dot products of the (dense, not yet
top-k) weight vectors, plus the FLOPS regulariser of SPLADE (``flops`` x the squared mean weight of every term, summed),
which keeps the vectors sparse and the posting lists short. At the end of the stage the head is exported as a
lexical encoder folder, ``<run>/objectives/<stage>/`` (``medvl index build --kind sparse --lexical DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError, InputError
from medvl.train.config import StageConfig
from medvl.train.data import register_dataset
from medvl.train.objectives import register_objective

__all__ = ["LexicalObjective", "LexicalOptions", "TextPairOptions", "TextPairs"]


@dataclass
class TextPairOptions(Config):
    """Pairs of texts from a table: a ``query`` and its ``document`` (e.g. a report's impression and findings).

    Attributes:
        table: CSV/TSV/Parquet.
        query / document: the two text columns (rows where either is empty are skipped).
        split_column / split / exclude_split: keep only (or drop) the rows of one split.
        limit: use only the first ``limit`` pairs.
    """

    table: str
    query: str
    document: str
    split_column: str = "split"
    split: str | None = None
    exclude_split: str | None = None
    limit: int | None = None


@register_dataset("text-pairs", TextPairOptions)
class TextPairs:
    """Query/document text pairs of a table."""

    fields: ClassVar[dict[str, str]] = {"query": "text", "document": "text"}

    def __init__(self, opts: TextPairOptions):
        from medvl.tasks.survival.tables import read_table

        df = read_table(opts.table)
        cols = [opts.query, opts.document] + ([opts.split_column] if opts.split or opts.exclude_split else [])
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(opts.table, f"missing column(s) {', '.join(missing)}")
        if opts.split is not None:
            df = df[df[opts.split_column].astype(str) == opts.split]
        if opts.exclude_split is not None:
            df = df[df[opts.split_column].astype(str) != opts.exclude_split]
        df = df.dropna(subset=[opts.query, opts.document])
        df = df[(df[opts.query].astype(str).str.strip() != "") & (df[opts.document].astype(str).str.strip() != "")]
        if opts.limit:
            df = df.head(opts.limit)
        if len(df) < 2:
            raise InputError(opts.table, "fewer than two query/document pairs")
        self.queries = df[opts.query].astype(str).tolist()
        self.documents = df[opts.document].astype(str).tolist()

    def __len__(self) -> int:
        return len(self.queries)

    def texts(self) -> list[str]:
        return self.queries + self.documents

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]:
        return {"query": self.queries[index], "document": self.documents[index]}


@dataclass
class LexicalOptions(Config):
    """Options of the ``lexical`` objective: ``top_k`` of the exported encoder, the FLOPS weight, the logit scale."""

    top_k: int = 128
    flops: float = 1e-3
    scale: float = 1.0

    def validate(self) -> None:
        if self.top_k < 0 or self.flops < 0 or self.scale <= 0:
            raise ConfigError("LexicalOptions: top_k and flops must be >= 0, scale > 0")


def _flops(weights: torch.Tensor) -> torch.Tensor:
    return weights.mean(0).pow(2).sum()


@register_objective("lexical")
class LexicalObjective(nn.Module):
    """Contrastive training of the lexicon head over a frozen text tower (see the module docstring)."""

    def __init__(self, model: nn.Module, stage: StageConfig, dataset: Any, seed: int = 0):
        super().__init__()
        from medvl.models.lexical import LexicalConfig, LexicalEncoder

        if len(stage.inputs) != 2:
            raise ConfigError(f"stage '{stage.name}': the lexical objective takes two text inputs (query, document)")
        fields = getattr(dataset, "fields", {})
        if any(fields.get(f) != "text" for f in stage.inputs) or "text" not in model.towers:
            raise ConfigError("objective 'lexical': both inputs must be text fields and the model needs a text tower")
        self.model, self.stage, (self.q, self.d) = model, stage, stage.inputs
        self.opts = LexicalOptions.from_dict(stage.objective_options)
        spec = model.config.towers["text"]
        lexical = LexicalEncoder(LexicalConfig(text_tower=spec.name, text_options=dict(spec.options),
                                               top_k=self.opts.top_k), tower=model.towers["text"])
        self.head = lexical.head  # registered first: its parameters are named head.* (what the stage trains)
        self.lexical = lexical

    def used_prefixes(self) -> list[str]:
        return ["head."]

    def train(self, mode: bool = True) -> LexicalObjective:
        super().train(mode)
        self.model.towers["text"].eval()  # frozen: no dropout, the states the exported head will see
        return self

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        wq = self.lexical.encode_dense(batch[self.q])
        wd = self.lexical.encode_dense(batch[self.d])
        logits = self.opts.scale * wq @ wd.T
        labels = torch.arange(len(logits), device=logits.device)
        nce = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        reg = _flops(wq) + _flops(wd)
        loss = nce + self.opts.flops * reg
        return loss, {"loss_lexical": float(nce.detach()), "flops": float(reg.detach()),
                      "terms_per_text": float((wd > 0).sum(1).float().mean())}

    def export(self, folder: str | Path) -> Path:
        """The trained head as a lexical encoder folder."""
        return self.lexical.save(folder)
