"""Build and query retrieval indexes from files: slide feature stores, embedding arrays, text and images.

Vectors are either raw tower features (case->case search within one encoder) or, with a model, joint-space
embeddings (text->image, image->text and case->case). Every file's provenance record (:mod:`medvl.provenance`) must
show the same model, preprocessing and tiling (or, with a model, that model's own tower): vectors of two encoders
are never mixed in one index. The index keeps that record, and a query from another space is refused with a clear
error naming what differs.
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
from medvl.provenance import Provenance, parse_provenance, require_match
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


#: what vectors mixed in one index must share (the input differs from file to file)
SPACE_PARTS = ("model", "preprocessing", "tiling")


def _same_space(emb: EmbeddingSet, path: Path, first: tuple[Path, EmbeddingSet] | None,
                trust: bool) -> list[str]:
    """Refuse a file whose vectors live in another space than the first file's (by provenance, by content)."""
    if first is None:
        return require_match(emb.provenance, Provenance(), path, trust=trust) if emb.provenance is None else []
    base_path, base = first
    if emb.provenance is None or base.provenance is None:  # only reachable with trust: the old name/width check
        notes = require_match(emb.provenance, Provenance(), path, trust=trust)
        if (emb.encoder, emb.dim, bool(emb.projected)) != (base.encoder, base.dim, bool(base.projected)):
            raise InputError(path, f"encoder/width {(emb.encoder, emb.dim)} differs from {base_path.name} "
                                   f"{(base.encoder, base.dim)}: one index holds one embedding space")
        return notes
    redo = f"one index holds one embedding space: {base_path.name} and this file were made differently"
    return require_match(emb.provenance, base.provenance.space(), path, parts=SPACE_PARTS, redo=redo)


def collect(paths: Sequence[Path], level: str = "slide", space: Any | None = None,
            trust_provenance: bool = False) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Read every file, check by provenance that they share one embedding space (or, with a model, that each comes
    from it), and stack vectors and metadata rows."""
    if level not in ("slide", "tile"):
        raise ConfigError(f"level must be 'slide' or 'tile', got {level!r}")
    blocks, metas, first, trusted = [], [], None, []
    for path in paths:
        emb = load_embeddings(path)
        if space is None:
            trusted += _same_space(emb, path, first, trust_provenance)
        first = first or (path, emb)
        vectors, meta = _rows(path, emb, _vectors(emb, path, space), level)
        blocks.append(np.asarray(vectors, dtype=np.float32))
        metas.append(meta)
    base = first[1]
    if space is not None:
        modality = base.modality or "image"
        prov = space.expected(modality, projected=True)
        trusted += space.trusted
    else:
        prov = base.provenance.space() if base.provenance is not None else Provenance()
    info = {"encoder": space.source if space is not None else base.encoder,
            "space": "joint" if space is not None or base.projected else "raw",
            "provenance": prov.replace(trusted=sorted(set(trusted))).to_dict(),
            "tower": load_embeddings(first[0]).modality or "image"}
    return np.concatenate(blocks), pd.concat(metas, ignore_index=True), info


def _load_space(model: str | Path | None, random_weights: bool, trust_provenance: bool) -> Any:
    if model is None:
        return None
    from medvl.tasks.space import JointSpace

    return JointSpace.load(model, random_weights=random_weights, trust_provenance=trust_provenance)


def build_index(inputs: Sequence[str | Path], out: Path, config: IndexConfig | None = None, level: str = "slide",
                model: str | Path | None = None, *, random_weights: bool = False,
                trust_provenance: bool = False) -> dict[str, Any]:
    """Build an index over files (optionally projected by ``model``) and save it to ``out``; the index records
    the provenance of its vectors (what queries must match), its embedding space and the kinds of cases it holds."""
    space = _load_space(model, random_weights, trust_provenance)
    vectors, meta, info = collect(expand_inputs(inputs), level, space, trust_provenance)
    index = RetrievalIndex.build(vectors, meta, config, encoder=info["encoder"], modality=info["tower"])
    prov = Provenance.from_dict(info["provenance"])
    index.info.update(space=info["space"], level=level, provenance=info["provenance"],
                      embedding_space=embedding_space(prov),
                      modalities=sorted({str(v) for v in meta["modality"].dropna()}))
    index.save(out)
    prov = Provenance.from_dict(info["provenance"])
    return {"index": str(out), "count": len(index), "dim": index.dim, "kind": index.kind,
            "space": info["space"], "level": level, "provenance": prov.summary(),
            "embedding_space": index.info["embedding_space"], "modalities": index.info["modalities"]}


def index_provenance(index: RetrievalIndex) -> Provenance | None:
    """The provenance of an index's vectors (``None`` for an index built before records existed)."""
    return parse_provenance(index.info.get("provenance"))


def _query_file(index: RetrievalIndex, f: Path, space: Any | None, joint: bool, trust: bool):
    emb = load_embeddings(f)
    if space is not None and joint:
        v = space.to_joint(emb, emb.modality or "image", origin=f)
    else:
        stored = index_provenance(index)
        if stored is not None and stored.model is not None:
            require_match(emb.provenance, stored, f, parts=SPACE_PARTS, trust=trust,
                          redo="a query must come from the index's embedding space")
        elif emb.encoder and index.info.get("encoder") and emb.encoder != index.info["encoder"]:
            raise InputError(f, f"features come from encoder '{emb.encoder}' but the index holds "
                                f"'{index.info['encoder']}' features")
        v = emb.embeddings
    tiles = is_tile_features(f)
    pooled = index.info.get("level") == "slide" and tiles
    labels = [f"file: {f.name}"] if pooled else [f"file: {f.name}#{i}" for i in range(len(v))]
    vectors = v.mean(axis=0, keepdims=True) if pooled else v
    return vectors, labels, [kind_of_embeddings(emb, tiles)] * len(vectors)


def _check_index_model(index: RetrievalIndex, space: Any) -> None:
    stored = index_provenance(index)
    if stored is not None and stored.model is not None:
        expected = space.expected(stored.model.modality, projected=True)
        require_match(stored, expected, "the index", parts=("model",),
                      redo="build the index with this model: medvl index build ... --model DIR")
    elif index.info.get("encoder") != space.source:
        raise InputError(None, f"the index was built with '{index.info.get('encoder')}', not with {space.source}")


def query_vectors(index: RetrievalIndex, *, texts: Sequence[str] = (), files: Sequence[Path] = (),
                  model: str | Path | None = None, modality: str | None = None, random_weights: bool = False,
                  trust_provenance: bool = False) -> tuple[np.ndarray, list[str], list[CaseKind | None]]:
    """Query vectors from texts (needs the model), image files (needs the model) or embedding files, each from the
    index's embedding space (checked by provenance), with the kind of case each one is (an embedding file knows
    it; ``modality`` names it for text and image queries and overrides a file's)."""
    space = _load_space(model, random_weights, trust_provenance)
    joint = index.info.get("space") == "joint"
    if (texts or any(Path(f).suffix.lower() not in EMBEDDING_SUFFIXES for f in files)) and (space is None or not joint):
        raise InputError(None, "text and image queries need --model and an index built in that model's joint space "
                               "(medvl index build ... --model DIR)")
    if space is not None and joint:
        _check_index_model(index, space)
    given = None if modality is None else CaseKind(modality)
    vectors, labels, kinds = [], [], []
    if texts:
        vectors.append(space.encode_text(list(texts)))
        labels.extend(f"text: {t}" for t in texts)
        kinds.extend([given] * len(texts))
    for f in map(Path, files):
        if f.suffix.lower() in EMBEDDING_SUFFIXES:
            v, names, found = _query_file(index, f, space, joint, trust_provenance)
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
                 modality: str | None = None, mix: bool = False, random_weights: bool = False,
                 trust_provenance: bool = False) -> list[dict[str, Any]]:
    """Search a saved index; one record per query with its ranked hits (metadata rows).

    Hits are of the query's kind (:mod:`medvl.tasks.retrieval.kinds`) unless ``mix``; a query of a modality the
    index does not hold is refused.
    """
    index = RetrievalIndex.load(index_dir)
    index.set_search_params(nprobe=nprobe)
    vectors, labels, kinds = query_vectors(index, texts=texts, files=files, model=model, modality=modality,
                                           random_weights=random_weights, trust_provenance=trust_provenance)
    results = search_kind(index, vectors, k, kinds, mix)
    return [{"query": label, "hits": hits.to_dict(orient="records")} for label, hits in zip(labels, results,
                                                                                            strict=True)]
