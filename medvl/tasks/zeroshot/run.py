"""Zero-shot diagnosis of one case file (what ``medvl zeroshot`` runs).

A case is a slide's tile-feature ``.h5`` (slide-level pooling, per-tile scores for heatmaps), an image file, or an
embeddings file (e.g. a CT volume embedding). Classes are graph concepts (a node and its descendants, or a list of
ids) and/or free-text names. Records carry a pseudonymous case reference, never the file path or header fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import InputError
from medvl.io.embeddings import READ_SUFFIXES as EMBEDDING_SUFFIXES
from medvl.io.embeddings import is_tile_features, load_embeddings
from medvl.tasks.zeroshot.classifier import (
    NORMAL_ID,
    NORMAL_NAMES,
    PresenceClassifier,
    ZeroShotClassifier,
    ZeroShotConfig,
)
from medvl.tasks.zeroshot.slide import keep_decision, slide_zeroshot


def case_ref(path: str | Path) -> str:
    """A stable pseudonym for a case file: a hash of its full resolved path, so that two files of one name in
    different folders get different references; lets batch users match rows without exposing names."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]


def resolve_classes(graph: Any, node: str | None = None, classes: Sequence[str] = (),
                    max_classes: int = 500) -> tuple[list[str], dict[str, list[str]]]:
    """Concept ids from ``node`` (with its descendants) and ``classes``; entries that are not ids become free text.

    Returns:
        ``(concept_ids, free_text_classes)`` where free-text classes map an id to its names.
    """
    ids: list[str] = []
    free: dict[str, list[str]] = {}
    if node:
        root = graph.resolve(node)
        ids.extend([root, *graph.descendants(root)])
    for item in classes:
        item = item.strip()
        if not item:
            continue
        if item in graph:
            ids.append(graph.resolve(item))
        elif ":" in item and " " not in item:
            graph.resolve(item)  # raises a clear "unknown concept id" error
        else:
            free[item] = [item]
    ids = list(dict.fromkeys(ids))
    if len(ids) + len(free) < 2:
        raise InputError(None, "zero-shot needs at least two classes (use --node with descendants or --classes A,B)")
    if len(ids) > max_classes:
        raise InputError(None, f"{len(ids)} classes under {node}; pick a narrower node (at most {max_classes})")
    return ids, free


def build_classifier(space: Any, graph: Any, ids: list[str], free: dict[str, list[str]], config: ZeroShotConfig,
                     with_normal: bool = False) -> ZeroShotClassifier:
    extra = dict(free)
    if with_normal:
        extra[NORMAL_ID] = list(NORMAL_NAMES)
    if ids:
        return ZeroShotClassifier.from_graph(space.model, graph, ids, config, extra_classes=extra)
    return ZeroShotClassifier.from_names(space.model, extra, config)


def classify_case(path: Path, space: Any, graph: Any, ids: list[str], free: dict[str, list[str]],
                  config: ZeroShotConfig, method: str = "topk", topk: int = 50, presence: bool = False,
                  modality: str | None = None, tile_scores_out: Path | None = None) -> dict[str, Any]:
    """Classify one case file; returns a JSON-able record (no identifiers)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "case file not found")
    suffix = path.suffix.lower()
    record: dict[str, Any] = {"case_ref": case_ref(path)}
    if is_tile_features(path):
        record.update(_classify_slide(path, space, graph, ids, free, config, method, topk, tile_scores_out))
        return record
    vectors_print = None
    if suffix in EMBEDDING_SUFFIXES:
        emb = load_embeddings(path)
        vectors = space.to_joint(emb, modality or emb.modality or "image", origin=path)
        kind = f"embedding ({modality or emb.modality or 'image'})"
        vectors_print = emb.provenance
    else:
        vectors, kind = space.encode_image_file(path), "image"
    record["provenance"] = prediction_provenance(space, path, vectors_print)
    case_vector = vectors.mean(axis=0, keepdims=True)
    record["input"] = kind
    if presence:
        names = {i: graph.concept(i).names(tuple(config.synonym_scopes)) for i in ids} | free
        clf = PresenceClassifier.from_names(space.model, names, config)
        record["presence"] = clf.decide(clf.predict_proba(case_vector))[0]
        return record
    clf = build_classifier(space, graph, ids, free, config)
    record["result"] = clf.decide(clf.predict_proba(case_vector))[0]
    return record


def prediction_provenance(space: Any, path: Path, vectors: Any = None) -> dict[str, Any]:
    """The provenance of a prediction record: the model's print, the input file's fingerprint and the record of
    the vectors it read (when they came from a file)."""
    from medvl.provenance import input_print

    record = {**space.provenance(), "input": input_print(path)}
    if vectors is not None:
        record["vectors"] = vectors.summary()
    return record


def _classify_slide(path: Path, space: Any, graph: Any, ids: list[str], free: dict[str, list[str]],
                    config: ZeroShotConfig, method: str, topk: int, tile_scores_out: Path | None) -> dict[str, Any]:
    emb = load_embeddings(path)
    tiles = space.to_joint(emb, "image", origin=path)
    space.check_domain("slide")
    clf = build_classifier(space, graph, ids, free, config, with_normal=method == "keep")
    pred = slide_zeroshot(tiles, clf, method, topk=topk)
    slide_clf = clf if method != "keep" else ZeroShotClassifier(
        pred.class_ids, clf.class_embeddings[[clf.class_ids.index(c) for c in pred.class_ids]],
        [clf.names[clf.class_ids.index(c)] for c in pred.class_ids], clf.ancestors, clf.temperature,
        clf.abstain_below)
    out: dict[str, Any] = {"input": "slide features", "n_tiles": len(tiles), "method": method,
                           "result": keep_decision(slide_clf.decide(pred.proba[None, :])[0], pred),
                           **_jsonable(pred.extra), "provenance": prediction_provenance(space, path, emb.provenance)}
    if tile_scores_out is not None:
        from medvl.atomic import atomic_path

        with atomic_path(tile_scores_out) as tmp, open(tmp, "wb") as fh:
            names = [clf.names[clf.class_ids.index(c)] if c in clf.class_ids else c for c in pred.tile_class_ids]
            np.savez(fh, scores=pred.tile_scores.astype(np.float32), class_ids=np.array(pred.tile_class_ids),
                     class_names=np.array(names),
                     coords=emb.coords if emb.coords is not None else np.zeros((0, 2)),
                     patch_size_level0=float(emb.attrs.get("patch_size_level0") or 0))
        out["tile_scores"] = str(tile_scores_out)
    return out


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in extra.items()}
