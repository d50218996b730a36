"""Leakage and duplicate check of a cohort manifest (``medvl cohort check``; ``train --check`` calls it too).

:func:`check_leakage` reads the manifest's pictures and reports, finds duplicate pairs (:mod:`.pairs`), joins them
into clusters (connected components), and reports what crosses splits: the same ``case_id`` in several splits, and
duplicate pairs or clusters whose members sit in different splits (the same patient scanned twice, a re-cut, a
copied report). The record holds per-pair evidence; it names case ids and rows because a user has to act on them,
so commands print only counts unless asked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.config import Config
from medvl.errors import InputError
from medvl.io.manifest import Manifest, read_manifest
from medvl.log import get_logger
from medvl.tasks.cohort.items import Pool, normalise_text, read_items
from medvl.tasks.cohort.pairs import DuplicateConfig, Pair, picture_pairs, text_pairs

__all__ = ["LeakageConfig", "check_leakage", "clusters"]

log = get_logger(__name__)


@dataclass
class LeakageConfig(Config):
    """What :func:`check_leakage` compares.

    Attributes:
        duplicates: thresholds of the duplicate rules.
        splits: splits that must be present and are compared (``None``: every split in the manifest).
        text_column: the column holding report text.
        text_encoder: text tower or model for report embeddings (``None``: wording only, no embeddings).
        image_model: model whose image tower embeds image rows (``None``: hashes and thumbnails only).
        examples: put a short normalised excerpt of each text cluster into the record.
        check_paths: require every referenced file to exist (manifest validation).
    """

    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)
    splits: list[str] | None = None
    text_column: str = "report"
    text_encoder: str | None = "hf-text"
    image_model: str | None = None
    examples: bool = False
    check_paths: bool = True


def clusters(n: int, pairs: list[Pair]) -> list[list[int]]:
    """Connected components (size >= 2) of the duplicate graph, largest first (union-find with path halving)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.i), find(p.j)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for k in range(n):
        groups[find(k)].append(k)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def _split_check(manifest: Manifest, wanted: list[str] | None) -> dict[str, int]:
    """Rows per split; refuses a manifest too small for the requested split check."""
    counts = Counter(str(r.get("split")).strip() for r in manifest.rows if r.get("split") is not None)
    if wanted is None:
        return dict(counts)
    if not counts:
        raise InputError(manifest.source, f"the split check of {', '.join(wanted)} needs a 'split' column with values")
    empty = [s for s in wanted if counts.get(s, 0) == 0]
    if empty or len(set(wanted)) < 2:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items()))
        missing = f"; no rows in {', '.join(empty)}" if empty else ""
        raise InputError(manifest.source, f"too small for the requested split check: it needs rows in at least two "
                                          f"splits ({', '.join(wanted)}){missing}; found {found}")
    return dict(counts)


def _member(pool: Pool, k: int) -> dict[str, Any]:
    return {"row": pool.rows[k], "case_id": pool.case_ids[k], "split": pool.splits[k]}


def _pool_record(pool: Pool, pairs: list[Pair], cfg: LeakageConfig) -> dict[str, Any]:
    comps = clusters(len(pool), pairs)
    cross = Counter()
    for p in pairs:
        a, b = pool.splits[p.i], pool.splits[p.j]
        if a is not None and b is not None and a != b:
            cross["~".join(sorted((a, b)))] += 1
    out_clusters = []
    for comp in comps:
        splits = sorted({s for s in (pool.splits[k] for k in comp) if s is not None})
        rec = {"size": len(comp), "splits": splits, "cross_split": len(splits) > 1,
               "members": [_member(pool, k) for k in comp]}
        if cfg.examples and pool.kind == "text":
            rec["example"] = normalise_text(pool.payloads[comp[0]])[:200]
        out_clusters.append(rec)
    return {
        "items": len(pool),
        "pairs": {"exact": sum(p.level == "exact" for p in pairs), "near": sum(p.level == "near" for p in pairs)},
        "cross_split_pairs": dict(sorted(cross.items())),
        "clusters": out_clusters,
        "pair_list": [{"a": _member(pool, p.i), "b": _member(pool, p.j), "level": p.level, "rules": p.rules,
                       "evidence": p.evidence} for p in pairs],
    }


def _case_overlap(manifest: Manifest) -> list[dict[str, Any]]:
    splits: dict[str, set[str]] = defaultdict(set)
    for r in manifest.rows:
        if r.get("split") is not None:
            splits[r.case_id].add(str(r.get("split")).strip())
    return [{"case_id": c, "splits": sorted(s)} for c, s in sorted(splits.items()) if len(s) > 1]


def _load(manifest: str | Path | Manifest, cfg: LeakageConfig) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    return read_manifest(manifest, check_paths=cfg.check_paths)


def check_leakage(manifest: str | Path | Manifest, config: LeakageConfig | None = None) -> dict[str, Any]:
    """Duplicates and split leakage of a cohort (see the module docstring); returns a JSON-able record.

    Raises:
        InputError: an unreadable manifest or item, or a manifest too small for the requested split check.
    """
    cfg = config or LeakageConfig()
    m = _load(manifest, cfg)
    if len(m) < 2:
        raise InputError(m.source, f"{len(m)} usable row(s): a duplicate check needs at least two")
    split_counts = _split_check(m, cfg.splits)
    warnings = [] if split_counts else ["the manifest has no 'split' column: duplicates only, no split leakage"]
    pictures, texts = read_items(m.rows, cfg.text_column)
    if not len(pictures) and not len(texts):
        raise InputError(m.source, f"no pictures and no '{cfg.text_column}' texts to compare")
    img_emb = None
    if cfg.image_model is not None and len(pictures):
        from medvl.tasks.cohort.embed import image_embeddings

        img_emb = image_embeddings(pictures, cfg.image_model)
    txt_emb = None
    if cfg.text_encoder is not None and len(texts) >= 2:
        from medvl.tasks.cohort.embed import text_embeddings

        txt_emb = text_embeddings([normalise_text(t) for t in texts.payloads], cfg.text_encoder)
    pools = {
        "pictures": _pool_record(pictures, picture_pairs(pictures, cfg.duplicates, img_emb), cfg),
        "texts": _pool_record(texts, text_pairs(texts, cfg.duplicates, txt_emb), cfg),
    }
    return _summarise(m, cfg, split_counts, pools, warnings)


def _summarise(m: Manifest, cfg: LeakageConfig, split_counts: dict[str, int], pools: dict[str, Any],
               warnings: list[str]) -> dict[str, Any]:
    wanted = set(cfg.splits) if cfg.splits else None

    def relevant(splits: list[str]) -> bool:
        return len(splits) > 1 and (wanted is None or len(wanted & set(splits)) > 1)

    overlap = [o for o in _case_overlap(m) if relevant(o["splits"])]
    cross_clusters = sum(relevant(c["splits"]) for p in pools.values() for c in p["clusters"])
    return {
        "manifest": m.source.name, "rows": len(m), "splits": split_counts,
        "leakage": {"case_ids_in_several_splits": overlap, "cross_split_clusters": cross_clusters,
                    "leaks": bool(overlap) or cross_clusters > 0},
        **pools, "config": cfg.to_dict(), "warnings": warnings,
    }
