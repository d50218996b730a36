"""The group bank: one embedding per knowledge group (e.g. every concept's name) for the ``bank`` loss.

The bank is re-encoded by the current model every ``bank_every`` steps; between refreshes the rows of the groups in a
batch are replaced by the batch's live (differentiable) anchor embeddings when the anchor is the group's own text,
and written back detached, so the bank tracks the model without encoding every name at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["GroupBank", "embed_texts"]


def embed_texts(encode: Callable[[list[str]], torch.Tensor], texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """``encode`` over ``texts`` in batches sorted by length (little padding), rows back in the input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts, rows = [], []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        parts.append(encode([texts[i] for i in idx]).float())
        rows += idx
    out = torch.cat(parts)
    result = torch.empty_like(out)
    result[torch.tensor(rows, device=out.device)] = out
    return result


class GroupBank:
    """Embeddings of ``texts`` (one per group id), kept between refreshes.

    Args:
        texts: the text of each group (``dataset.group_texts``).
        every: re-encode every N steps.
        batch_size: texts per forward pass when re-encoding.
    """

    def __init__(self, texts: Sequence[str], every: int, batch_size: int = 512):
        self.texts, self.every, self.batch_size = list(texts), every, batch_size
        self.embeddings: torch.Tensor | None = None

    def due(self, step: int) -> bool:
        return self.embeddings is None or step % self.every == 0

    @torch.no_grad()
    def refresh(self, encode: Callable[[list[str]], torch.Tensor]) -> None:
        """Re-encode every group's text with ``encode`` (the caller sets eval mode and precision)."""
        self.embeddings = embed_texts(encode, self.texts, self.batch_size)

    def table(self, groups: torch.Tensor, anchors: torch.Tensor, anchor_texts: Sequence[str]) -> torch.Tensor:
        """The bank ``[G, D]`` with the rows of ``groups`` whose anchor is the group's own text replaced by the live
        ``anchors`` (gradients flow into them); those rows are then stored, detached, for the next steps."""
        if self.embeddings is None:
            raise RuntimeError("GroupBank.table before the first refresh")
        groups = groups.to(anchors.device)
        live = torch.tensor([t == self.texts[int(g)] for t, g in zip(anchor_texts, groups, strict=True)],
                            device=anchors.device)
        bank = self.embeddings.to(anchors.device)
        table = bank.to(anchors.dtype).index_put((groups[live],), anchors[live])
        self.embeddings = bank.index_put((groups[live],), anchors[live].detach().float())
        return table
