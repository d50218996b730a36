"""Embedding preprocessed CT volumes with a volume tower or a medvl checkpoint, written atomically with case ids."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.errors import ConfigError, InputError
from medvl.io.atomic import atomic_path, atomic_write_json
from medvl.log import get_logger
from medvl.radiology.transforms import CTPreprocessConfig

log = get_logger(__name__)

__all__ = [
    "EMBEDDING_FORMATS",
    "VolumeEncoder",
    "embed_arrays",
    "embed_cases",
    "load_volume_encoder",
    "read_embeddings",
    "write_embeddings",
]


@dataclass
class VolumeEncoder:
    """A callable from ``Tensor[B, 1, D, H, W]`` to ``Tensor[B, embed_dim]`` with what it expects.

    Attributes:
        name: the tower name or checkpoint path.
        encode: the batch function (no gradients are taken by the caller).
        embed_dim: output width.
        preprocess: the preprocessing the model was trained with (from its checkpoint), if known.
        input_shape: ``(D, H, W)`` the model requires, or ``None`` when any size works.
        device: where ``encode`` runs.
    """

    name: str
    encode: Callable[[Any], Any]
    embed_dim: int
    preprocess: CTPreprocessConfig | None = None
    input_shape: tuple[int, int, int] | None = None
    device: str = "cpu"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_volume_encoder(spec: str, tower_kwargs: dict[str, Any] | None = None, device: str = "auto") -> VolumeEncoder:
    """The single place that turns ``--tower NAME`` or ``--model CHECKPOINT_DIR`` into a :class:`VolumeEncoder`.

    Args:
        spec: a registered volume tower name (``resnet3d-tiny``) or a medvl checkpoint directory.
        tower_kwargs: options of the tower's config (e.g. ``{"depth": 18}``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    """
    device = resolve_device(device)
    if Path(spec).is_dir():
        return _checkpoint_encoder(Path(spec), device)
    from medvl.models import create_tower, get_tower_entry

    entry = get_tower_entry(spec)
    if entry.modality != "volume":
        raise ConfigError(f"tower '{spec}' encodes {entry.modality}, not volumes")
    import torch

    with torch.random.fork_rng(devices=[]):
        # a tower without weights starts from a fixed init: cases reused from an earlier run match new ones
        torch.manual_seed(0)
        tower = create_tower(spec, **(tower_kwargs or {}))
    tower = tower.to(device).eval()
    return VolumeEncoder(spec, tower.encode, tower.embed_dim, None, getattr(tower, "input_shape", None), device)


def _checkpoint_encoder(path: Path, device: str) -> VolumeEncoder:
    """A medvl checkpoint folder: its volume tower + projection (joint space), and the CT preprocessing it stored.

    Training stores the preprocessing as ``save_checkpoint(model, folder, extra={"ct_preprocess": cfg.to_dict()})``;
    that config then overrides the command line's, so inference reproduces training.
    """
    from medvl.models import create_model
    from medvl.models.checkpoint import read_checkpoint_config

    meta = read_checkpoint_config(path)
    model = create_model(path, device=device).eval()
    if "volume" not in model.towers:
        raise ConfigError(f"{path}: this model has no volume tower (towers: {', '.join(model.towers)})")
    stored = meta.get("ct_preprocess")
    preprocess = CTPreprocessConfig.from_dict(stored, source=str(path / "config.json")) if stored else None
    if preprocess is None:
        log.warning("%s stores no CT preprocessing config; using the command line's", path)
    tower = model.towers["volume"]
    dim = int(model.config.embed_dim)
    return VolumeEncoder(str(path), model.encode_volume, dim, preprocess, getattr(tower, "input_shape", None), device)


def embed_arrays(encoder: VolumeEncoder, arrays: Iterable[np.ndarray], batch_size: int = 4) -> np.ndarray:
    """Embed ``[1, D, H, W]`` arrays in batches; returns float32 ``[N, embed_dim]``."""
    import torch

    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            x = torch.from_numpy(np.stack(batch)).to(encoder.device)
            with torch.inference_mode():
                out.append(encoder.encode(x).float().cpu().numpy())
            batch.clear()

    for arr in arrays:
        batch.append(arr)
        if len(batch) >= batch_size:
            flush()
    flush()
    return np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), dtype=np.float32)


# ------------------------------------------------------------------------------------------------------ files
def _write_npz(tmp: Path, ids: list[str], emb: np.ndarray) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, embeddings=emb, case_ids=np.array(ids, dtype=str))


def _write_h5(tmp: Path, ids: list[str], emb: np.ndarray) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("case_ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())


def _write_parquet(tmp: Path, ids: list[str], emb: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"case_id": ids, "embedding": pa.array(list(emb), type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp)


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [str(i) for i in z["case_ids"]], z["embeddings"]


def _read_h5(path: Path) -> tuple[list[str], np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return [i.decode() if isinstance(i, bytes) else str(i) for i in f["case_ids"][()]], f["embeddings"][()]


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    emb = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    return [str(i) for i in table.column("case_id").to_pylist()], emb


#: suffix -> (writer, reader)
EMBEDDING_FORMATS = {
    ".npz": (_write_npz, _read_npz),
    ".h5": (_write_h5, _read_h5),
    ".parquet": (_write_parquet, _read_parquet),
}


def _format(path: Path):
    fmt = EMBEDDING_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: embeddings file must end in {', '.join(EMBEDDING_FORMATS)}")
    return fmt


def write_embeddings(path: str | Path, case_ids: list[str], embeddings: np.ndarray, config: dict[str, Any]) -> Path:
    """Write embeddings with their case ids (atomically) and the resolved config beside them (``<path>.config.json``).
    """
    path = Path(path)
    writer, _ = _format(path)
    with atomic_path(path) as tmp:
        writer(tmp, list(case_ids), np.asarray(embeddings, dtype=np.float32))
    atomic_write_json(config_path(path), config)
    return path


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(case_ids, embeddings [N, D])`` from a file written by :func:`write_embeddings`."""
    path = Path(path)
    _, reader = _format(path)
    if not path.is_file():
        raise InputError(path, "embeddings file not found")
    return reader(path)


def config_path(path: Path) -> Path:
    return path.with_name(path.name + ".config.json")


def embed_cases(
    cases: list[Any],
    config: CTPreprocessConfig,
    encoder: VolumeEncoder,
    out: str | Path,
    cache: Any = None,
    *,
    batch_size: int = 4,
    stop_on_error: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Preprocess (through the cache) and embed ``cases``; write ``out`` and ``<out>.config.json``.

    A rerun with the same config keeps the embeddings already in ``out`` and embeds only the missing cases.

    Returns:
        A summary: counts, the output path, failed cases with their errors.
    """
    import medvl
    from medvl.radiology.preprocess import iter_preprocess

    out = Path(out)
    _format(out)
    resolved = {"ct_preprocess": config.to_dict(), "encoder": encoder.name, "embed_dim": encoder.embed_dim,
                "medvl_version": medvl.__version__}
    done = _previous(out, resolved)
    todo = [c for c in cases if c.case_id not in done]
    results = list(iter_preprocess(todo, config, cache, stop_on_error=stop_on_error, **options))
    ok = [r for r in results if r.error is None]
    new = embed_arrays(encoder, (r.entry.array for r in ok), batch_size=batch_size)
    merged = {**done, **{r.case.case_id: e for r, e in zip(ok, new, strict=True)}}
    order = [c.case_id for c in cases if c.case_id in merged]
    if order:
        write_embeddings(out, order, np.stack([merged[i] for i in order]), resolved)
    return {
        "out": str(out),
        "config": str(config_path(out)),
        "embedded": len(ok),
        "reused": len(done),
        "embed_dim": encoder.embed_dim,
        "failed": [r.record() for r in results if r.error is not None],
    }


def _previous(out: Path, resolved: dict[str, Any]) -> dict[str, np.ndarray]:
    """Embeddings a previous run with the same config already wrote to ``out``."""
    cfg = config_path(out)
    if not (out.is_file() and cfg.is_file()):
        return {}
    try:
        same = json.loads(cfg.read_text()) == json.loads(json.dumps(resolved))
        if not same:
            log.info("%s was written with another config; recomputing all cases", out.name)
            return {}
        ids, emb = read_embeddings(out)
    except (ValueError, OSError, KeyError):
        return {}
    return dict(zip(ids, emb, strict=True))
