"""Candidate pairs and their evidence: which items of a pool may be duplicates of each other, and why.

Candidates come from every signal at once, each searched without comparing all pairs by hand: equal file or pixel
hashes (hash groups), perceptual hashes within a Hamming radius (FAISS binary index; every flip/rotation of each
item is a query), thumbnail correlation and model embeddings above a cosine (FAISS inner-product range search), for
texts equal normalised text, word overlap (sparse products) and text embeddings. Every candidate then gets the full
evidence record and the rules of :class:`DuplicateConfig` decide: ``exact`` (same bytes, pixels or text) or ``near``
(the rules that passed are listed), or not a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.tasks.cohort.hashes import (
    HASH_BITS,
    dhash_many,
    dihedral,
    hamming,
    phash_crops,
    phash_many,
    thumbnail_many,
)
from medvl.tasks.cohort.items import Pool, normalise_text

__all__ = ["RULES", "DuplicateConfig", "Pair", "picture_pairs", "text_pairs"]


#: every rule that can declare two items duplicates (pictures, then texts)
RULES = ("same_file", "same_pixels", "phash", "crop", "dhash", "thumbnail", "embedding", "same_text", "wording",
         "meaning")


@dataclass
class DuplicateConfig(Config):
    """Thresholds of the duplicate rules. The picture defaults were chosen on the BreastMNIST validation split
    (planted edited copies of its images against the training images), the text defaults on IU reports.

    Attributes:
        phash_max: perceptual (DCT) hash bits that may differ, of 64 (the best flip/rotation counts).
        crop_phash_max: the same for the best crop of one image against the other (the ``crop`` rule).
        dhash_max: difference hash bits that may differ, of 64 (the best flip/rotation counts).
        thumbnail_min: correlation of 16x16 grey thumbnails for the ``thumbnail`` rule...
        thumbnail_phash_max: ...which also asks the perceptual hashes to be this close.
        embedding_min: cosine of image-model embeddings (with ``image_model``).
        text_jaccard_min: word-set overlap (Jaccard) of normalised texts for the ``wording`` rule.
        text_cosine_min: cosine of text embeddings for the ``meaning`` rule...
        text_cosine_jaccard_min: ...which also asks for this much word overlap.
        dihedral: also match flipped and rotated copies.
        crop_scales: also match cropped copies: perceptual hashes of sub-images keeping these fractions of each
            side (empty: no crops)...
        crop_grid: ...at a ``crop_grid x crop_grid`` lattice of positions.
        rules: the rules that may declare a duplicate (``None``: all; e.g. ``[same_file, same_pixels]`` for exact
            copies only).
    """

    phash_max: int = 8
    crop_phash_max: int = 6
    dhash_max: int = 6
    thumbnail_min: float = 0.97
    thumbnail_phash_max: int = 16
    embedding_min: float = 0.95
    text_jaccard_min: float = 0.8
    text_cosine_min: float = 0.97
    text_cosine_jaccard_min: float = 0.5
    dihedral: bool = True
    crop_scales: list[float] = field(default_factory=lambda: [0.9, 0.85, 0.8])
    crop_grid: int = 4
    rules: list[str] | None = None

    def validate(self) -> None:
        unknown = sorted(set(self.rules or ()) - set(RULES))
        if unknown:
            raise ConfigError(f"DuplicateConfig.rules: unknown rule '{unknown[0]}' (known: {', '.join(RULES)})")
        if any(not 0 < c < 1 for c in self.crop_scales) or self.crop_grid < 1:
            raise ConfigError("DuplicateConfig.crop_scales: fractions in (0, 1); crop_grid >= 1")
        for name in ("phash_max", "crop_phash_max", "dhash_max", "thumbnail_phash_max"):
            if not 0 <= getattr(self, name) < HASH_BITS:
                raise ConfigError(f"DuplicateConfig.{name}: must be in [0, {HASH_BITS})")
        for name in ("thumbnail_min", "embedding_min", "text_jaccard_min", "text_cosine_min",
                     "text_cosine_jaccard_min"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"DuplicateConfig.{name}: must be in [-1, 1]")


@dataclass
class Pair:
    """Two items of a pool (``i < j``), their evidence, the rules that passed and the verdict."""

    i: int
    j: int
    evidence: dict[str, Any] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    @property
    def level(self) -> str | None:
        if {"same_file", "same_pixels", "same_text"} & set(self.rules):
            return "exact"
        return "near" if self.rules else None


def _key(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def _hash_groups(values: Iterable[str]) -> set[tuple[int, int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(values):
        groups[v].append(i)
    return {(m[a], m[b]) for m in groups.values() for a in range(len(m)) for b in range(a + 1, len(m))}


def _binary_range(base: np.ndarray, queries: np.ndarray, owners: np.ndarray, radius: int) -> set[tuple[int, int]]:
    import faiss

    index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(np.ascontiguousarray(base))
    lims, _, ids = index.range_search(np.ascontiguousarray(queries), radius + 1)  # strictly below the radius
    return {_key(int(owners[q]), int(ids[k])) for q in range(len(queries)) for k in range(lims[q], lims[q + 1])
            if owners[q] != ids[k]}


def _cosine_range(base: np.ndarray, queries: np.ndarray, owners: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    lims, _, ids = index.range_search(np.ascontiguousarray(queries, dtype=np.float32), float(threshold) - 1e-6)
    return {_key(int(owners[q]), int(ids[k])) for q in range(len(queries)) for k in range(lims[q], lims[q + 1])
            if owners[q] != ids[k]}


# ------------------------------------------------------------------------------------------------ pictures
@dataclass
class _PictureCodes:
    phash: np.ndarray  # [N, V, 8] packed codes of every flip/rotation (view 0 = as stored)
    crops: np.ndarray | None  # [N, V * C, 8] of every crop of every flip/rotation
    dhash: np.ndarray  # [N, V, 8]
    thumbs: np.ndarray  # [N, V, 256]


def _picture_codes(pool: Pool, cfg: DuplicateConfig) -> _PictureCodes:
    ph, cr, dh, th = [], [], [], []
    for pic in pool.payloads:
        views = dihedral(pic.view) if cfg.dihedral else [pic.view]
        if cfg.crop_scales:
            per_view = [phash_crops(v, tuple(cfg.crop_scales), cfg.crop_grid) for v in views]
            ph.append(np.stack([c[0] for c in per_view]))
            cr.append(np.concatenate([c[1:] for c in per_view]))
        else:
            ph.append(phash_many(views))
        dh.append(dhash_many(views))
        th.append(thumbnail_many(views))
    crops = np.asarray(cr, np.uint8) if cr else None
    return _PictureCodes(np.asarray(ph, np.uint8), crops, np.asarray(dh, np.uint8), np.asarray(th, np.float32))


def _closest(codes: np.ndarray, i: int, j: int, base: np.ndarray | None = None) -> int:
    """Fewest differing bits between any view of one item and the other as stored (``base``: the stored codes when
    ``codes`` holds other views, e.g. crops), both ways."""
    base = codes if base is None else base
    return int(min(hamming(codes[i], base[j, 0]).min(), hamming(codes[j], base[i, 0]).min()))


def _picture_evidence(pool: Pool, codes: _PictureCodes, emb: np.ndarray | None, i: int, j: int) -> dict[str, Any]:
    a, b = pool.payloads[i], pool.payloads[j]
    t = codes.thumbs
    thumb = max(float((t[i] @ t[j, 0]).max()), float((t[j] @ t[i, 0]).max()))
    ev: dict[str, Any] = {
        "same_file": a.file_hash == b.file_hash,
        "same_pixels": a.pixels == b.pixels,
        "phash": _closest(codes.phash, i, j),
        "dhash": _closest(codes.dhash, i, j),
        "thumbnail": round(thumb, 4),
    }
    if codes.crops is not None:
        ev["phash_crop"] = _closest(codes.crops, i, j, codes.phash)
    if emb is not None:
        ev["embedding"] = round(float(emb[i] @ emb[j]), 4)
    return ev


def _picture_rules(ev: dict[str, Any], cfg: DuplicateConfig) -> list[str]:
    checks = {
        "same_file": ev["same_file"],
        "same_pixels": ev["same_pixels"],
        "phash": ev["phash"] <= cfg.phash_max,
        "crop": ev.get("phash_crop", HASH_BITS) <= cfg.crop_phash_max,
        "dhash": ev["dhash"] <= cfg.dhash_max,
        "thumbnail": ev["thumbnail"] >= cfg.thumbnail_min and ev["phash"] <= cfg.thumbnail_phash_max,
        "embedding": ev.get("embedding", -1.0) >= cfg.embedding_min,
    }
    return _enabled(checks, cfg)


def _enabled(checks: dict[str, bool], cfg: DuplicateConfig) -> list[str]:
    return [name for name, ok in checks.items() if ok and (cfg.rules is None or name in cfg.rules)]


def picture_pairs(pool: Pool, cfg: DuplicateConfig, embeddings: np.ndarray | None = None) -> list[Pair]:
    """Every candidate pair of pictures with its evidence and verdict (non-duplicates are dropped)."""
    n = len(pool)
    if n < 2:
        return []
    codes = _picture_codes(pool, cfg)
    n_views = codes.phash.shape[1]
    owners = np.repeat(np.arange(n), n_views)
    cands = _hash_groups(p.file_hash for p in pool.payloads) | _hash_groups(p.pixels for p in pool.payloads)
    cands |= _binary_range(codes.phash[:, 0], codes.phash.reshape(n * n_views, -1), owners,
                           max(cfg.phash_max, cfg.thumbnail_phash_max))
    if codes.crops is not None:
        n_crops = codes.crops.shape[1]
        cands |= _binary_range(codes.phash[:, 0], codes.crops.reshape(n * n_crops, -1),
                               np.repeat(np.arange(n), n_crops), cfg.crop_phash_max)
    cands |= _binary_range(codes.dhash[:, 0], codes.dhash.reshape(n * n_views, -1), owners, cfg.dhash_max)
    cands |= _cosine_range(codes.thumbs[:, 0], codes.thumbs.reshape(n * n_views, -1), owners, cfg.thumbnail_min)
    if embeddings is not None:
        cands |= _cosine_range(embeddings, embeddings, np.arange(n), cfg.embedding_min)
    pairs = []
    for i, j in sorted(cands):
        ev = _picture_evidence(pool, codes, embeddings, i, j)
        rules = _picture_rules(ev, cfg)
        if rules:
            pairs.append(Pair(i, j, ev, rules))
    return pairs


# ------------------------------------------------------------------------------------------------ texts
def _word_matrix(texts: list[str]):
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, text in enumerate(texts):
        for w in set(text.split()):
            rows.append(r)
            cols.append(vocab.setdefault(w, len(vocab)))
    data = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), max(1, len(vocab))))


def _jaccard_pairs(words, threshold: float, chunk: int = 1024) -> set[tuple[int, int]]:
    """All pairs with word-set Jaccard >= threshold, from sparse products (chunked: memory O(chunk x N))."""
    sizes = np.asarray(words.sum(1)).reshape(-1)
    out: set[tuple[int, int]] = set()
    for start in range(0, words.shape[0], chunk):
        inter = (words[start:start + chunk] @ words.T).toarray()
        union = sizes[start:start + chunk, None] + sizes[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        ii, jj = np.nonzero(jac >= threshold)
        out |= {_key(int(a) + start, int(b)) for a, b in zip(ii, jj, strict=True) if a + start != b}
    return out


def _jaccard(words, i: int, j: int) -> float:
    a, b = set(words[i].indices), set(words[j].indices)
    return len(a & b) / max(1, len(a | b))


def text_pairs(pool: Pool, cfg: DuplicateConfig, embeddings: np.ndarray | None = None) -> list[Pair]:
    """Every candidate pair of texts with its evidence and verdict (non-duplicates are dropped)."""
    if len(pool) < 2:
        return []
    norm = [normalise_text(t) for t in pool.payloads]
    words = _word_matrix(norm)
    cands = _hash_groups(norm) | _jaccard_pairs(words, min(cfg.text_jaccard_min, 1.0))
    if embeddings is not None:
        cands |= _cosine_range(embeddings, embeddings, np.arange(len(pool)), cfg.text_cosine_min)
    pairs = []
    for i, j in sorted(cands):
        ev: dict[str, Any] = {"same_text": norm[i] == norm[j], "jaccard": round(_jaccard(words, i, j), 4)}
        if embeddings is not None:
            ev["cosine"] = round(float(embeddings[i] @ embeddings[j]), 4)
        checks = {
            "same_text": ev["same_text"],
            "wording": ev["jaccard"] >= cfg.text_jaccard_min,
            "meaning": ev.get("cosine", -1.0) >= cfg.text_cosine_min and ev["jaccard"] >= cfg.text_cosine_jaccard_min,
        }
        rules = _enabled(checks, cfg)
        if rules:
            pairs.append(Pair(i, j, ev, rules))
    return pairs
