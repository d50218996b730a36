"""Embedding preprocessed CT volumes with a volume tower or a medvl checkpoint, written atomically with case ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.atomic import atomic_write_json
from medvl.errors import ConfigError, InputError, MedvlError
from medvl.io.embeddings import WRITE_SUFFIXES, EmbeddingSet, load_embeddings, save_embeddings
from medvl.log import get_logger, warn
from medvl.provenance import RANDOM_HINT, ModelPrint, Provenance, input_print
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
        projected: True when ``encode`` returns joint-space (projected, normalised) vectors: a checkpoint's
            ``encode_volume``; False for a bare tower's raw features.
        model_print: which weights make the vectors (:class:`medvl.provenance.ModelPrint`), checked by reuse and by
            every consumer.
    """

    name: str
    encode: Callable[[Any], Any]
    embed_dim: int
    preprocess: CTPreprocessConfig | None = None
    input_shape: tuple[int, int, int] | None = None
    device: str = "cpu"
    projected: bool = False
    model_print: ModelPrint | None = None


#: the seed of a bare tower's random initialisation (reused cases match new ones)
TOWER_SEED = 0


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_volume_encoder(spec: str, tower_kwargs: dict[str, Any] | None = None, device: str = "auto", *,
                        random_weights: bool = False, strict_domain: bool = False) -> VolumeEncoder:
    """The single place that turns ``--tower NAME`` or ``--model CHECKPOINT_DIR`` into a :class:`VolumeEncoder`.

    Args:
        spec: a registered volume tower name (``resnet3d-tiny``) or a medvl checkpoint directory.
        tower_kwargs: options of the tower's config (e.g. ``{"depth": 18}``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        random_weights: allow a tower without weights (a random initialisation, seed 0).
        strict_domain: refuse a checkpoint trained on another kind of data than CT (else a warning).
    """
    device = resolve_device(device)
    if Path(spec).is_dir():
        return _checkpoint_encoder(Path(spec), device, random_weights, strict_domain)
    from medvl.models import create_tower, get_tower_entry

    entry = get_tower_entry(spec)
    if entry.modality != "volume":
        raise ConfigError(f"tower '{spec}' encodes {entry.modality}, not volumes")
    import torch

    from medvl.models.identity import tower_print

    with torch.random.fork_rng(devices=[]):
        # a tower without weights starts from a fixed init: cases reused from an earlier run match new ones
        torch.manual_seed(TOWER_SEED)
        tower = create_tower(spec, **(tower_kwargs or {}))
    if tower.random_weights and not random_weights:
        raise ConfigError(f"volume tower '{spec}' has no weights (a random initialisation): give its weights or a "
                          f"trained checkpoint, or {RANDOM_HINT}")
    weights = (tower_kwargs or {}).get("weights")
    printed = tower_print(spec, dict(tower_kwargs or {}), "volume", weights, seed=None if weights else TOWER_SEED)
    tower = tower.to(device).eval()
    return VolumeEncoder(spec, tower.encode, tower.embed_dim, None, getattr(tower, "input_shape", None), device,
                         model_print=printed)


def _checkpoint_encoder(path: Path, device: str, random_weights: bool, strict_domain: bool) -> VolumeEncoder:
    """A medvl checkpoint folder: its volume tower + projection (joint space), and the CT chain it was trained with.

    A checkpoint trained with a CT chain (``preprocessing.volume``, written by the trainer) has that chain override
    the command line's, so inference reproduces training. One without it is warned about, unless its volume tower
    holds random weights (a pipeline's seeded model), which has no training-time chain to keep.
    """
    from medvl.models import create_model
    from medvl.models.domain import domain_mismatch, input_domain
    from medvl.models.factory import require_weights
    from medvl.models.identity import model_print

    model = create_model(path, device=device).eval()
    if "volume" not in model.towers:
        raise ConfigError(f"{path}: this model has no volume tower (towers: {', '.join(model.towers)})")
    require_weights(model, random_weights, f"checkpoint {path}", ["volume"])
    stored = model.preprocessing.get("volume")
    preprocess = CTPreprocessConfig.from_dict(stored, source=str(path / "config.json")) if stored else None
    if preprocess is None and not model.random_weights.get("volume"):
        warn(f"{path} stores no CT preprocessing config; using the command line's")
    message = domain_mismatch(model.domain("volume"), input_domain("ct"), path.name, strict_domain)
    if message:
        warn(message)
    tower = model.towers["volume"]
    dim = int(model.config.embed_dim)
    return VolumeEncoder(str(path.resolve()), model.encode_volume, dim, preprocess,
                         getattr(tower, "input_shape", None), device, projected=True,
                         model_print=model_print(model, "volume", projected=True))


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
#: suffixes :func:`write_embeddings` writes (the layouts of :mod:`medvl.io.embeddings`)
EMBEDDING_FORMATS = WRITE_SUFFIXES


def _format(path: Path) -> None:
    if path.suffix.lower() not in EMBEDDING_FORMATS:
        raise ConfigError(f"{path}: embeddings file must end in {', '.join(EMBEDDING_FORMATS)}")


def write_embeddings(path: str | Path, case_ids: list[str], embeddings: np.ndarray, config: dict[str, Any], *,
                     encoder: str, projected: bool, provenance: Provenance | None = None) -> Path:
    """Write volume embeddings with their case ids and provenance, and the resolved config beside them.

    The file has the layout of its suffix in :mod:`medvl.io.embeddings` (what ``medvl zeroshot``, ``medvl index
    build`` and survival ``--embeddings`` read); ``<path>.config.json`` holds ``config``. Both are written atomically.

    Args:
        path: ``.npz``, ``.parquet``, ``.csv`` or ``.h5``.
        case_ids: one id per row.
        embeddings: ``[N, D]``.
        config: the resolved preprocessing/encoder config.
        encoder: the readable encoder name (the tower, or the checkpoint folder).
        projected: True when the vectors are a checkpoint's joint-space embeddings, False for a bare tower's features.
        provenance: the record of what made them (weights, CT chain, each case's input fingerprint).
    """
    path = Path(path)
    _format(path)
    emb = EmbeddingSet(np.asarray(embeddings, dtype=np.float32), ids=np.array(list(case_ids), dtype=str),
                       encoder=encoder, modality="volume", projected=bool(projected), provenance=provenance)
    save_embeddings(path, emb)
    atomic_write_json(config_path(path), config)
    return path


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(case_ids, embeddings [N, D])`` from a file written by :func:`write_embeddings`.

    Use :func:`medvl.io.embeddings.load_embeddings` for the encoder, modality and ``projected`` flag too.
    """
    path = Path(path)
    _format(path)
    emb = load_embeddings(path)
    if emb.ids is None:
        raise InputError(path, "holds no case ids (expected the 'ids' of medvl.io.embeddings)")
    return [str(i) for i in emb.ids], emb.embeddings


def config_path(path: Path) -> Path:
    return path.with_name(path.name + ".config.json")


def case_print(case: Any) -> str | None:
    """The fingerprint of one CT case's input: its image (every file of a DICOM folder), label map and series.

    ``None`` when a file cannot be read: the case then fails in preprocessing, under the batch policy."""
    from medvl.hashing import config_hash

    try:
        return config_hash([input_print(case.path), input_print(case.labels) if case.labels else "",
                            case.series or ""])
    except OSError:
        return None


def embed_cases(
    cases: list[Any],
    config: CTPreprocessConfig,
    encoder: VolumeEncoder,
    out: str | Path,
    cache: Any = None,
    *,
    batch_size: int = 4,
    skip_errors: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Preprocess (through the cache) and embed ``cases``; write ``out`` and ``<out>.config.json``.

    Cases stream through: each preprocessed volume goes to the encoder as soon as a batch is full and is dropped
    after it, so memory holds one batch of volumes, not the cohort. Failures follow :class:`medvl.batch.BatchPolicy`.
    A rerun keeps the embeddings already in ``out`` only for cases whose provenance matches: the same weights
    (content hash: a retrained checkpoint in the same folder recomputes), the same CT chain and the same input
    files; every other case is embedded again.

    Returns:
        A summary: counts, the output path, failed cases with their errors.
    """
    import medvl
    from medvl.radiology.preprocess import iter_preprocess

    out = Path(out)
    _format(out)
    resolved = {"ct_preprocess": config.to_dict(), "encoder": encoder.name, "embed_dim": encoder.embed_dim,
                "projected": encoder.projected, "medvl_version": medvl.__version__}
    prints = {c.case_id: case_print(c) for c in cases}
    expected = Provenance(model=encoder.model_print, preprocessing=config.to_dict())
    done = _previous(out, expected, prints)
    todo = [c for c in cases if c.case_id not in done]
    embedded: list[str] = []
    failed: list[dict[str, Any]] = []

    def arrays() -> Iterator[np.ndarray]:
        for result in iter_preprocess(todo, config, cache, skip_errors=skip_errors, **options):
            if result.error is not None:
                failed.append(result.record())
                continue
            embedded.append(result.case.case_id)
            yield result.entry.array

    new = embed_arrays(encoder, arrays(), batch_size=batch_size)
    merged = {**done, **dict(zip(embedded, new, strict=True))}
    order = [c.case_id for c in cases if c.case_id in merged]
    if order:
        record = expected.replace(inputs={i: prints[i] for i in order})
        write_embeddings(out, order, np.stack([merged[i] for i in order]), resolved, encoder=encoder.name,
                         projected=encoder.projected, provenance=record)
    return {
        "out": str(out),
        "config": str(config_path(out)),
        "embedded": len(embedded),
        "reused": len(done),
        "embed_dim": encoder.embed_dim,
        "failed": failed,
    }


def _previous(out: Path, expected: Provenance, prints: dict[str, str | None]) -> dict[str, np.ndarray]:
    """Embeddings a previous run wrote to ``out`` that can be kept: same model and CT chain (by provenance), and,
    per case, the same input fingerprint."""
    from medvl.provenance import differences

    if not out.is_file():
        return {}
    try:
        emb = load_embeddings(out)
    except MedvlError:
        return {}
    diffs = differences(emb.provenance, expected, ("model", "preprocessing"))
    if diffs or emb.ids is None:
        log.info("%s was made differently (%s); recomputing all cases", out.name, "; ".join(diffs) or "no case ids")
        return {}
    stored = emb.provenance.inputs or {}
    return {str(i): e for i, e in zip(emb.ids, emb.embeddings, strict=True)
            if prints.get(str(i)) is not None and stored.get(str(i)) == prints[str(i)]}
