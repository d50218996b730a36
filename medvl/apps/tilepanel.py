"""The slide viewer's tile panel: what the page shows about the tile a user clicked.

Its ranked classes (zero-shot, at the model's temperature, with abstention as on the diagnosis page), the ontology
context of the top classes, the most similar tiles of the same slide, and the nearest cases of the workspace's case
collection. Each answer is data; the page only lays it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medvl.apps.diagnosis import diagnose, ontology_context

__all__ = ["TileAnswer", "answer_tile", "nearest_cases", "nearest_tiles", "tile_image"]


@dataclass
class TileAnswer:
    """One tile's zero-shot answer.

    Attributes:
        index: the tile's row in the slide's tile grid.
        box: its level-0 box ``(x0, y0, x1, y1)``.
        record: the classifier's decision record (``top``: ranked classes with probabilities; abstention).
        context: ontology context of the top classes (None for free-text classes).
    """

    index: int
    box: tuple[float, float, float, float]
    record: dict[str, Any]
    context: list[dict[str, Any] | None]


def answer_tile(classifier: Any, graph: Any, coords: np.ndarray, size: float, embeddings: np.ndarray, index: int,
                top_k: int = 10, context_k: int = 3) -> TileAnswer:
    """Ranked classes and ontology context of tile ``index``."""
    x, y = (float(v) for v in np.asarray(coords)[index])
    record = diagnose(classifier, embeddings[index], top_k=top_k)
    context = [ontology_context(graph, t["id"]) for t in record["top"][:context_k]]
    return TileAnswer(index=int(index), box=(x, y, x + size, y + size), record=record, context=context)


def nearest_tiles(embeddings: np.ndarray, index: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` tiles of the slide most similar to tile ``index`` (cosine of the joint-space embeddings)."""
    emb = np.asarray(embeddings, np.float32)
    sims = emb @ emb[index]
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[: min(k, max(0, len(emb) - 1))]
    return [(int(j), float(sims[j])) for j in order]


def tile_image(slide: Any, xy: tuple[float, float], size_level0: float, px: int = 160) -> np.ndarray:
    """RGB thumbnail (``px`` a side) of the tile at level-0 ``xy``, read from the pyramid level nearest that size."""
    from PIL import Image

    level = slide.best_level_for_downsample(max(1.0, size_level0 / px))
    ds = float(slide.level_downsamples[level])
    side = max(1, int(round(size_level0 / ds)))
    rgb = slide.read_region((int(xy[0]), int(xy[1])), level, (side, side))
    return np.asarray(Image.fromarray(rgb).resize((px, px), Image.Resampling.BILINEAR))


def nearest_cases(cases: Any, index: Any, query: np.ndarray, exclude: str | None = None,
                  k: int = 5, kind: str = "H&E slide", mix: bool = False) -> list[dict[str, Any]]:
    """The ``k`` nearest cases of the collection to ``query`` (one joint-space vector), the slide itself left out.

    Only cases of the query's ``kind`` (a case label, e.g. ``"H&E slide"``) are returned unless ``mix``; a kind the
    collection holds no case of is refused (:func:`medvl.tasks.retrieval.kinds.search_kind`).

    Returns:
        ``{"case", "kind", "score", "thumbnail"}`` per hit, best first.
    """
    from medvl.apps.cases import kind_of
    from medvl.tasks.retrieval.kinds import search_kind

    hits = search_kind(index, np.atleast_2d(query), k + 1, [kind_of(kind)], mix)[0]
    if exclude is not None:
        hits = hits[hits["case"] != exclude]
    return [{"case": h["case"], "kind": h["kind"], "score": float(h["score"]),
             "thumbnail": cases.thumbnails[cases.index_of(h["case"])]} for _, h in hits.head(k).iterrows()]
