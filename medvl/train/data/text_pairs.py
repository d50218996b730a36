"""``text-pairs``: pairs of texts from a table (a query and its document), e.g. for the ``lexical`` objective."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from medvl.config import Config
from medvl.errors import InputError
from medvl.train.data.registry import register_dataset
from medvl.train.data.tables import select_rows

__all__ = ["TextPairOptions", "TextPairs"]


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
        df = select_rows(df, opts.table, [opts.query, opts.document], opts.split_column, opts.split,
                         opts.exclude_split)
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
