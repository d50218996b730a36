"""Build and query retrieval indexes from files: slide feature stores, embedding arrays, text and images.

Vectors are either raw tower features (case->case search within one encoder) or, with a model, joint-space
embeddings (text->image, image->text and case->case). The index records which (``encoder``, ``space``) so a query
from another encoder or space is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvl.errors import ConfigError, InputError
from medvl.io.embeddings import READ_SUFFIXES as EMBEDDING_SUFFIXES
from medvl.io.embeddings import EmbeddingSet, is_tile_features, load_embeddings
from medvl.tasks.retrieval.index import IndexConfig, RetrievalIndex
from medvl.tasks.retrieval.kinds import CaseKind, embedding_space, kind_of_embeddings, search_kind


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expand to the embedding files they hold (sorted)."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in EMBEDDING_SUFFIXES))
        elif item.exists():
            out.append(item)
        else:
            raise InputError(item, "no such file or folder")
    if not out:
        raise InputError(None, f"no embedding files ({', '.join(EMBEDDING_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return out


def _vectors(emb: EmbeddingSet, path: Path, space: Any | None) -> np.ndarray:
    if space is None:
        return emb.embeddings
    return space.to_joint(emb, emb.modality or "image", origin=path)


def _with_kind(meta: pd.DataFrame, kind: CaseKind) -> pd.DataFrame:
    for name, value in kind.to_dict().items():
        meta[name] = value
    return meta


def _rows(path: Path, emb: EmbeddingSet, vectors: np.ndarray, level: str) -> tuple[np.ndarray, pd.DataFrame]:
    kind = kind_of_embeddings(emb, is_tile_features(path))
    if level == "slide" and is_tile_features(path):
        pooled = vectors.mean(axis=0, keepdims=True)
        return pooled, _with_kind(pd.DataFrame({"source": [path.stem], "n_tiles": [len(vectors)]}), kind)
    meta = _with_kind(pd.DataFrame({"source": path.stem, "row": np.arange(len(vectors))}), kind)
    if emb.coords is not None:
        meta["x"], meta["y"] = emb.coords[:, 0], emb.coords[:, 1]
    # case ids go under "case_id": "id" is the vector row number that search puts in front of every hit
    for key, column in (("ids", "case_id"), ("labels", "label"), ("split", "split")):
        value = getattr(emb, key)
        if value is not None:
            meta[column] = np.asarray(value)
    return vectors, meta


def collect(paths: Sequence[Path], level: str = "slide", space: Any | None = None
            ) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Read every file, check they share one encoder and width, and stack vectors and metadata rows."""
    if level not in ("slide", "tile"):
        raise ConfigError(f"level must be 'slide' or 'tile', got {level!r}")
    blocks, metas, first = [], [], None
    for path in paths:
        emb = load_embeddings(path)
        key = (emb.encoder, emb.dim, bool(emb.projected))
        if first is None:
            first = (path, key)
        elif key != first[1] and space is None:
            raise InputError(path, f"encoder/width {key[:2]} differs from {first[0].name} {first[1][:2]}: "
                                   "one index holds one embedding space")
        vectors, meta = _rows(path, emb, _vectors(emb, path, space), level)
        blocks.append(np.asarray(vectors, dtype=np.float32))
        metas.append(meta)
    encoder = space.source if space is not None else first[1][0]
    info = {"encoder": encoder, "space": "joint" if space is not None or first[1][2] else "raw",
            "tower": load_embeddings(first[0]).modality or "image"}
    return np.concatenate(blocks), pd.concat(metas, ignore_index=True), info


def build_index(inputs: Sequence[str | Path], out: Path, config: IndexConfig | None = None, level: str = "slide",
                model: str | Path | None = None) -> dict[str, Any]:
    """Build an index over files (optionally projected by ``model``) and save it to ``out``."""
    space = None
    if model is not None:
        from medvl.tasks.space import JointSpace

        space = JointSpace.load(model)
    vectors, meta, info = collect(expand_inputs(inputs), level, space)
    index = RetrievalIndex.build(vectors, meta, config, encoder=info["encoder"], modality=info["tower"])
    index.info["space"] = info["space"]
    index.info["level"] = level
    index.info["embedding_space"] = embedding_space(info["encoder"], info["space"], index.dim)
    index.info["modalities"] = sorted({str(v) for v in meta["modality"].dropna()})
    index.save(out)
    return {"index": str(out), "count": len(index), "dim": index.dim, "kind": index.kind,
            "space": info["space"], "level": level, "embedding_space": index.info["embedding_space"],
            "modalities": index.info["modalities"]}


def _space_of(index: RetrievalIndex, emb: EmbeddingSet, vectors: np.ndarray, joint: bool) -> str:
    encoder = index.info.get("encoder") if joint else emb.encoder
    return embedding_space(encoder, "joint" if joint else "raw", vectors.shape[1])


def _check_space(index: RetrievalIndex, space: str, where: Path) -> None:
    mine = index.info.get("embedding_space")
    if mine and space != mine:
        raise InputError(where, f"the query lives in the embedding space '{space}' but the index in '{mine}': "
                                "queries and index must come from the same model")


def _file_query(index: RetrievalIndex, f: Path, space: Any, joint: bool):
    emb = load_embeddings(f)
    v = space.to_joint(emb, emb.modality or "image", origin=f) if (space is not None and joint) else emb.embeddings
    if not joint and emb.encoder and index.info.get("encoder") and emb.encoder != index.info["encoder"]:
        raise InputError(f, f"features come from encoder '{emb.encoder}' but the index holds "
                            f"'{index.info['encoder']}' features")
    _check_space(index, _space_of(index, emb, v, joint), f)
    tiles = is_tile_features(f)
    pooled = index.info.get("level") == "slide" and tiles
    labels = [f"file: {f.name}"] if pooled else [f"file: {f.name}#{i}" for i in range(len(v))]
    vectors = v.mean(axis=0, keepdims=True) if pooled else v
    return vectors, labels, [kind_of_embeddings(emb, tiles)] * len(vectors)


def query_vectors(index: RetrievalIndex, *, texts: Sequence[str] = (), files: Sequence[Path] = (),
                  model: str | Path | None = None, modality: str | None = None
                  ) -> tuple[np.ndarray, list[str], list[CaseKind | None]]:
    """Query vectors from texts (needs the model), image files (needs the model) or embedding files, with the
    kind of case each one is (an embedding file knows it; ``modality`` names it for text and image queries and
    overrides a file's)."""
    space = None
    if model is not None:
        from medvl.tasks.space import JointSpace

        space = JointSpace.load(model)
    joint = index.info.get("space") == "joint"
    if (texts or any(Path(f).suffix.lower() not in EMBEDDING_SUFFIXES for f in files)) and (space is None or not joint):
        raise InputError(None, "text and image queries need --model and an index built in that model's joint space "
                               "(medvl index build ... --model DIR)")
    if space is not None and joint and index.info.get("encoder") != space.source:
        raise InputError(None, f"the index was built with '{index.info.get('encoder')}', not with {space.source}")
    given = None if modality is None else CaseKind(modality)
    vectors, labels, kinds = [], [], []
    if texts:
        vectors.append(space.encode_text(list(texts)))
        labels.extend(f"text: {t}" for t in texts)
        kinds.extend([given] * len(texts))
    for f in map(Path, files):
        if f.suffix.lower() in EMBEDDING_SUFFIXES:
            v, names, found = _file_query(index, f, space, joint)
            kinds.extend([given] * len(names) if given is not None else found)
        else:
            v, names = space.encode_image_file(f), [f"image: {f.name}"]
            kinds.append(given)
        vectors.append(v)
        labels.extend(names)
    if not vectors:
        raise InputError(None, "give a query: --text TEXT and/or --query FILE")
    return np.concatenate(vectors).astype(np.float32), labels, kinds


def search_index(index_dir: Path, *, texts: Sequence[str] = (), files: Sequence[Path] = (),
                 model: str | Path | None = None, k: int = 10, nprobe: int | None = None,
                 modality: str | None = None, mix: bool = False) -> list[dict[str, Any]]:
    """Search a saved index; one record per query with its ranked hits (metadata rows).

    Hits are of the query's kind (:mod:`medvl.tasks.retrieval.kinds`) unless ``mix``; a query of a modality the
    index does not hold is refused.
    """
    index = RetrievalIndex.load(index_dir)
    index.set_search_params(nprobe=nprobe)
    vectors, labels, kinds = query_vectors(index, texts=texts, files=files, model=model, modality=modality)
    results = search_kind(index, vectors, k, kinds, mix)
    return [{"query": label, "hits": hits.to_dict(orient="records")} for label, hits in zip(labels, results,
                                                                                            strict=True)]
