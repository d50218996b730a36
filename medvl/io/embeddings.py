"""Embedding files: one layout per suffix, read and written here only.

Every producer (``medvl ct embed``, the cohort pipeline, exports of the tasks) writes through :func:`save_embeddings`
and every consumer (``medvl zeroshot``, ``medvl index build``, survival ``--embeddings``, the apps) reads through
:func:`load_embeddings`, so ids and the provenance of the vectors survive every hop.

Layouts (``N`` rows, ``D`` dimensions):

``.npz``
    arrays ``embeddings [N, D]`` float32 and optionally ``ids``, ``labels``, ``split`` ``[N]``, ``coords [N, k]``;
    0-d arrays ``encoder``, ``modality`` (str), ``projected`` (bool) and ``medvl_provenance`` (JSON text). Read with
    ``allow_pickle=False``.
``.parquet`` / ``.csv``
    one row per vector: ``case_id``, ``label``, ``split`` (where known), ``coord_0..`` (where known) and
    ``emb_0 .. emb_{D-1}``. Parquet keeps ``encoder``, ``modality``, ``projected``, ``medvl_provenance`` in its schema
    metadata; a CSV, which has no metadata, keeps them as constant columns of those names.
``.h5`` / ``.hdf5``
    a file with an ``embeddings`` dataset is a set of case embeddings: datasets ``embeddings``, ``ids`` (and
    ``labels``, ``split``, ``coords`` where known), attributes ``encoder``, ``modality``, ``projected``. Any other
    ``.h5`` is a whole-slide tile feature store, read by :func:`medvl.io.features.read_features`.
``.npy``
    read only: a bare ``[N, D]`` matrix.

``medvl_provenance`` is the record of what made the vectors (:mod:`medvl.provenance`): consumers check it against
the model they are given. ``projected`` says whether the vectors already live in a model's joint space (a
checkpoint's ``encode_*``: projected and L2-normalised) or are raw tower features that a model must still project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_path
from medvl.errors import ConfigError, InputError, reason
from medvl.io.features import H5_ERRORS
from medvl.provenance import PROVENANCE_KEY, Provenance, parse_provenance

__all__ = [
    "EMBEDDING_PREFIX",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "EmbeddingSet",
    "h5_layout",
    "is_tile_features",
    "load_embeddings",
    "save_embeddings",
]

#: prefix of the columns that carry embedding dimensions in a table
EMBEDDING_PREFIX = "emb_"
_COORD_PREFIX = "coord_"
_ARRAY_KEYS = ("embeddings", "features", "X")
#: per-row fields: (EmbeddingSet attribute, npz/h5 key, table column)
_ROW_FIELDS = (("ids", "ids", "case_id"), ("labels", "labels", "label"), ("split", "split", "split"))
_META_KEYS = ("encoder", "modality", "projected", PROVENANCE_KEY)


@dataclass
class EmbeddingSet:
    """Vectors with optional per-row ids, labels and split, and the encoder that produced them.

    Attributes:
        embeddings: ``[N, D]`` float32.
        ids: ``[N]`` case ids (strings).
        labels: ``[N]`` labels (strings or numbers).
        split: ``[N]`` split names (``train``/``val``/``test``).
        encoder: the tower name (raw features) or the checkpoint folder (projected vectors).
        modality: ``image``, ``volume``, ``text``, ... (the model tower the vectors belong to).
        projected: True for joint-space (projected, normalised) vectors, False for raw tower features.
        coords: ``[N, k]`` positions (level-0 tile coordinates of a slide).
        attrs: further attributes of a feature store (read only), and ``source``: the file the vectors were read
            from.
        provenance: what made the vectors (:class:`medvl.provenance.Provenance`), ``None`` when not recorded.
    """

    embeddings: np.ndarray
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    split: np.ndarray | None = None
    encoder: str | None = None
    modality: str | None = None
    projected: bool | None = None
    coords: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def subset(self, mask: np.ndarray) -> EmbeddingSet:
        pick = (lambda a: None if a is None else a[mask])  # noqa: E731 - tiny local helper
        return EmbeddingSet(self.embeddings[mask], pick(self.ids), pick(self.labels), pick(self.split), self.encoder,
                            self.modality, self.projected, pick(self.coords), dict(self.attrs), self.provenance)


# ------------------------------------------------------------------------------------------------------ public
def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read an embeddings file by suffix; a clear error for a missing file, an unknown format or a bad array."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "embeddings file not found")
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(path, f"unsupported embeddings format '{path.suffix}' (use {', '.join(_LOADERS)})")
    emb = loader(path)
    emb.attrs.setdefault("source", str(path))  # where the vectors were read from: what errors about them name
    if emb.embeddings.ndim != 2 or len(emb.embeddings) == 0:
        raise InputError(path, f"expected a non-empty [N, D] matrix, got shape {tuple(emb.embeddings.shape)}")
    if not np.isfinite(emb.embeddings).all():
        raise InputError(path, "embeddings contain NaN or infinite values")
    for name in ("ids", "labels", "split", "coords"):
        value = getattr(emb, name)
        if value is not None and len(value) != len(emb.embeddings):
            raise InputError(path, f"'{name}' has {len(value)} rows but there are {len(emb.embeddings)} embeddings")
    return emb


def save_embeddings(path: str | Path, emb: EmbeddingSet) -> Path:
    """Write ``emb`` atomically in the layout of ``path``'s suffix (``.npz``, ``.parquet``, ``.csv``, ``.h5``).

    Raises:
        ConfigError: the suffix names no writable layout.
        ValueError: a per-row field does not have one entry per row.
    """
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ConfigError(f"{path}: embeddings file must end in {', '.join(_WRITERS)}")
    matrix = np.asarray(emb.embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {matrix.shape}")
    for name in ("ids", "labels", "split", "coords"):
        value = getattr(emb, name)
        if value is not None and len(value) != len(matrix):
            raise ValueError(f"'{name}' has {len(value)} entries for {len(matrix)} embeddings")
    with atomic_path(path) as tmp:
        writer(tmp, emb, matrix)
    return path


def is_tile_features(path: str | Path) -> bool:
    """Whether ``path`` is one slide's tile-feature store (pooled per slide), not a file of case embeddings."""
    return Path(path).suffix.lower() in (".h5", ".hdf5") and h5_layout(path) == "features"


def h5_layout(path: str | Path) -> str:
    """``"cases"`` for an ``.h5`` of case embeddings (an ``embeddings`` dataset), else ``"features"`` (tile store)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "cases" if "embeddings" in f else "features"
    except H5_ERRORS as exc:
        raise InputError(path, f"not a readable HDF5 file ({reason(exc)})") from None


# ------------------------------------------------------------------------------------------------------ helpers
def _row_array(value: Any) -> np.ndarray:
    """A per-row field as a plain (never object) array: text becomes fixed-width unicode."""
    arr = np.asarray(value)
    return arr.astype(str) if arr.dtype == object or arr.dtype.kind == "S" else arr


def _meta(emb: EmbeddingSet) -> dict[str, Any]:
    meta = {k: getattr(emb, k) for k in _META_KEYS[:3] if getattr(emb, k) is not None and getattr(emb, k) != ""}
    if emb.provenance is not None:
        meta[PROVENANCE_KEY] = emb.provenance.to_json()
    return meta


def _meta_text(value: Any) -> str:
    """A metadata value as text (``projected`` as ``true``/``false``)."""
    return ("true" if value else "false") if isinstance(value, bool | np.bool_) else str(value)


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bytes | str):
        text = _as_str(value).strip().lower()
        if text in ("", "none", "nan"):
            return None
        return text in ("1", "true", "yes")
    return bool(value)


# ------------------------------------------------------------------------------------------------------ npz
def _write_npz(tmp: Path, emb: EmbeddingSet, matrix: np.ndarray) -> None:
    arrays: dict[str, np.ndarray] = {"embeddings": matrix}
    for attr, key, _ in _ROW_FIELDS:
        if getattr(emb, attr) is not None:
            arrays[key] = _row_array(getattr(emb, attr))
    if emb.coords is not None:
        arrays["coords"] = np.asarray(emb.coords)
    for key, value in _meta(emb).items():
        arrays[key] = np.array(bool(value)) if key == "projected" else np.array(str(value))
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_npz(path: Path) -> EmbeddingSet:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"cannot read npz ({exc})") from None
    key = next((k for k in _ARRAY_KEYS if k in data.files), None)
    if key is None:
        raise InputError(path, f"no 'embeddings' array (arrays: {', '.join(data.files)})")
    get = (lambda k: data[k] if k in data.files else None)  # noqa: E731
    scalar = (lambda k: str(data[k]) if k in data.files else None)  # noqa: E731
    try:  # members are read lazily: object (pickled) or damaged members fail here
        projected = bool(data["projected"]) if "projected" in data.files else None
        return EmbeddingSet(np.asarray(data[key], dtype=np.float32), get("ids"), get("labels"), get("split"),
                            scalar("encoder"), scalar("modality"), projected, get("coords"),
                            provenance=parse_provenance(scalar(PROVENANCE_KEY)))
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"cannot read npz ({' '.join(str(exc).split())[:200]})") from None


def _load_npy(path: Path) -> EmbeddingSet:
    try:
        return EmbeddingSet(np.asarray(np.load(path, allow_pickle=False), dtype=np.float32))
    except ValueError as exc:
        raise InputError(path, f"cannot read npy ({exc})") from None


# ------------------------------------------------------------------------------------------------------ tables
def _frame(emb: EmbeddingSet, matrix: np.ndarray):
    import pandas as pd

    columns: dict[str, Any] = {}
    for attr, _, column in _ROW_FIELDS:
        if getattr(emb, attr) is not None:
            columns[column] = _row_array(getattr(emb, attr))
    if emb.coords is not None:
        coords = np.asarray(emb.coords).reshape(len(matrix), -1)
        columns.update({f"{_COORD_PREFIX}{i}": coords[:, i] for i in range(coords.shape[1])})
    dims = pd.DataFrame(matrix, columns=[f"{EMBEDDING_PREFIX}{i}" for i in range(matrix.shape[1])])
    return pd.concat([pd.DataFrame(columns, index=dims.index), dims], axis=1)


def _write_parquet(tmp: Path, emb: EmbeddingSet, matrix: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_frame(emb, matrix), preserve_index=False)
    meta = {k.encode(): _meta_text(v).encode() for k, v in _meta(emb).items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    pq.write_table(table, tmp)


def _write_csv(tmp: Path, emb: EmbeddingSet, matrix: np.ndarray) -> None:
    df = _frame(emb, matrix)
    for i, (key, value) in enumerate(_meta(emb).items()):  # CSV has no header metadata: constant columns
        df.insert(i, key, value)
    df.to_csv(tmp, index=False)


def _table_set(path: Path, df, meta: dict[str, Any]) -> EmbeddingSet:
    cols = [c for c in df.columns if str(c).startswith(EMBEDDING_PREFIX)]
    if not cols:
        raise InputError(path, f"no embedding columns (expected {EMBEDDING_PREFIX}0, {EMBEDDING_PREFIX}1, ...)")
    col = (lambda name: df[name].to_numpy() if name in df.columns else None)  # noqa: E731
    ids = col("case_id") if "case_id" in df.columns else col("id")
    coord_cols = sorted((c for c in df.columns if str(c).startswith(_COORD_PREFIX)), key=lambda c: int(c[6:]))
    try:
        matrix = df[cols].to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"embedding columns are not numeric ({exc})") from None
    return EmbeddingSet(matrix, None if ids is None else ids.astype(str), col("label"),
                        None if col("split") is None else col("split").astype(str), _as_str(meta.get("encoder")),
                        _as_str(meta.get("modality")), _as_bool(meta.get("projected")),
                        df[coord_cols].to_numpy() if coord_cols else None,
                        provenance=parse_provenance(_as_str(meta.get(PROVENANCE_KEY))))


def _load_parquet(path: Path) -> EmbeddingSet:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        df = table.to_pandas()
    except Exception as exc:  # pyarrow raises many kinds
        raise InputError(path, f"cannot read parquet ({type(exc).__name__}: {exc})") from None
    stored = table.schema.metadata or {}
    meta = {k: stored[k.encode()].decode(errors="replace") for k in _META_KEYS if k.encode() in stored}
    return _table_set(path, df, meta)


def _load_csv(path: Path) -> EmbeddingSet:
    import pandas as pd

    try:  # ids and splits stay text ("007" is not 7)
        df = pd.read_csv(path, dtype={"case_id": str, "id": str, "split": str, "encoder": str, "modality": str,
                                      PROVENANCE_KEY: str})
    except Exception as exc:  # pandas raises many kinds
        raise InputError(path, f"cannot read csv ({type(exc).__name__}: {exc})") from None
    meta = {}
    for key in _META_KEYS:
        if key in df.columns:
            values = df[key].dropna().unique()
            if len(values) > 1:
                raise InputError(path, f"column '{key}' must hold one value for every row (found {len(values)})")
            meta[key] = values[0] if len(values) else None
    return _table_set(path, df, meta)


# ------------------------------------------------------------------------------------------------------ h5
def _write_h5(tmp: Path, emb: EmbeddingSet, matrix: np.ndarray) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=matrix)
        for attr, key, _ in _ROW_FIELDS:
            if getattr(emb, attr) is not None:
                arr = _row_array(getattr(emb, attr))
                if arr.dtype.kind == "U":
                    f.create_dataset(key, data=arr.astype(object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset(key, data=arr)
        if emb.coords is not None:
            f.create_dataset("coords", data=np.asarray(emb.coords))
        for key, value in _meta(emb).items():
            f.attrs[key] = bool(value) if key == "projected" else str(value)


def _h5_rows(dataset) -> np.ndarray:
    if dataset.dtype.kind in ("O", "S"):
        return np.array(dataset.asstr()[()], dtype=str)
    return dataset[()]


def _load_h5_cases(path: Path) -> EmbeddingSet:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            rows = {key: _h5_rows(f[key]) if key in f else None for key in ("ids", "labels", "split", "coords")}
            attrs = dict(f.attrs)
            matrix = np.asarray(f["embeddings"][()], dtype=np.float32)
    except H5_ERRORS as exc:
        raise InputError(path, f"cannot read HDF5 embeddings ({reason(exc)})") from None
    return EmbeddingSet(matrix, rows["ids"], rows["labels"], rows["split"], _as_str(attrs.get("encoder")),
                        _as_str(attrs.get("modality")), _as_bool(attrs.get("projected")), rows["coords"],
                        provenance=parse_provenance(_as_str(attrs.get(PROVENANCE_KEY))))


def _load_h5(path: Path) -> EmbeddingSet:
    if h5_layout(path) == "cases":
        return _load_h5_cases(path)
    from medvl.io.features import read_features

    features, coords, attrs = read_features(path)
    attrs = dict(attrs or {})
    return EmbeddingSet(np.asarray(features, dtype=np.float32), coords=None if coords is None else np.asarray(coords),
                        encoder=_as_str(attrs.get("encoder")), modality="image",
                        projected=_as_bool(attrs.get("projected")), attrs=attrs,
                        provenance=parse_provenance(attrs.get(PROVENANCE_KEY)))


_Writer = Callable[[Path, EmbeddingSet, np.ndarray], None]

_LOADERS: dict[str, Callable[[Path], EmbeddingSet]] = {
    ".npz": _load_npz,
    ".npy": _load_npy,
    ".parquet": _load_parquet,
    ".csv": _load_csv,
    ".h5": _load_h5,
    ".hdf5": _load_h5,
}

_WRITERS: dict[str, _Writer] = {
    ".npz": _write_npz,
    ".parquet": _write_parquet,
    ".csv": _write_csv,
    ".h5": _write_h5,
    ".hdf5": _write_h5,
}

#: suffixes :func:`load_embeddings` reads and :func:`save_embeddings` writes
READ_SUFFIXES = tuple(_LOADERS)
WRITE_SUFFIXES = tuple(_WRITERS)
