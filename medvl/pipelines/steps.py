"""The per-case step registry: each step calls the library function its CLI command calls.

Slides: ``tile`` (``medvl slide tile``) -> ``extract`` (``medvl slide extract``) -> ``zeroshot`` (``medvl zeroshot``).
CT: ``preprocess`` (``medvl ct preprocess``) -> ``embed`` (``medvl ct embed``) -> ``zeroshot``. A step returns a
:class:`StepOutput`: a JSON-able record and the files it wrote (checked on resume). Steps write their outputs
atomically (the library functions do), so a killed step leaves nothing half-written under a final name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError, InputError
from medvl.io.manifest import ManifestRow
from medvl.registry import Registry

__all__ = ["COHORT_STEPS", "STEPS", "StepDef", "StepOutput", "check_steps", "register_step"]


@dataclass
class StepOutput:
    """What a finished step reports: a record (JSON-able) and the files it wrote."""

    record: dict[str, Any]
    outputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepDef:
    """A registered per-case step.

    Attributes:
        name: step name used in pipeline files.
        modality: ``slide`` or ``ct``.
        fn: ``fn(ctx, row) -> StepOutput``.
        needs: steps that must run before it (their keys enter this step's key).
        config: ``config(pipeline_config) -> JSON-able``: the settings that change this step's outputs.
    """

    name: str
    modality: str
    fn: Callable[[Any, ManifestRow], StepOutput]
    needs: tuple[str, ...]
    config: Callable[[Any], Any]


#: modality -> registry of its per-case steps
STEPS: dict[str, Registry[StepDef]] = {}
#: steps run once over all finished cases: ``fn(ctx, cohort) -> StepOutput | None`` (registered by
#: :mod:`medvl.pipelines.cohort`)
COHORT_STEPS: Registry[Callable[..., StepOutput | None]] = Registry("cohort step", builtins=("medvl.pipelines.cohort",))


def register_step(modality: str, name: str, needs: tuple[str, ...] = (), config: Callable[[Any], Any] = lambda c: {}):
    """Decorator registering ``fn(ctx, row) -> StepOutput`` as a per-case step of ``modality``."""

    def decorator(fn):
        STEPS.setdefault(modality, Registry(f"{modality} step")).add(name, StepDef(name, modality, fn, tuple(needs),
                                                                                   config))
        return fn

    return decorator


def check_steps(steps: dict[str, list[str]], cohort_steps: list[str]) -> None:
    """Unknown modalities or step names, and steps listed before what they need, are config errors."""
    for modality, names in steps.items():
        if modality not in STEPS:
            raise ConfigError(f"steps: unknown modality '{modality}' (known: {', '.join(STEPS)})")
        for i, name in enumerate(names):
            try:
                step = STEPS[modality].get(name)
            except ConfigError as exc:
                raise ConfigError(f"steps.{modality}: {exc}") from None
            missing = [n for n in step.needs if n not in names[:i]]
            if missing:
                raise ConfigError(f"steps.{modality}: '{name}' needs '{missing[0]}' before it")
    for name in cohort_steps:
        try:
            COHORT_STEPS.get(name)
        except ConfigError as exc:
            raise ConfigError(f"cohort_steps: {exc}") from None


# ------------------------------------------------------------------------------------------------ slides
def _slide_job(row: ManifestRow) -> Any:
    from medvl.pathology.pipeline import SlideJob

    mpp = row.get("slide_mpp")
    return SlideJob(row.case_id, row.path, float(mpp) if mpp is not None else None)


def _tile_configs(cfg: Any) -> tuple[Any, Any]:
    return cfg.slide.tiles, cfg.slide.tissue


def _tile_config(cfg: Any) -> dict[str, Any]:
    tiles, tissue = _tile_configs(cfg)
    return {"tiles": tiles.to_dict(), "tissue": tissue.to_dict()}


def _slide_h5(ctx: Any, row: ManifestRow) -> Path:
    return ctx.layout.features / f"{row.case_id}.h5"


@register_step("slide", "tile", config=_tile_config)
def tile_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """Tissue mask and tile grid: ``features/<case_id>.h5`` (coords) + mask PNG + GeoJSON."""
    from medvl.pathology.pipeline import tile_slide

    tiles, tissue = _tile_configs(ctx.config)
    # the rule of `medvl slide tile`: a store is kept only when its provenance records this tiling of this slide
    record = tile_slide(_slide_job(row), ctx.layout.features, tiles, tissue)
    if record["status"] not in ("ok", "skipped"):
        raise InputError(row.path, record.get("warning") or record["status"])
    return StepOutput({"tiles": record["tiles"], "tissue_fraction": record["tissue_fraction"]},
                      [record["h5"], record["mask_png"], record["geojson"]])


@register_step("slide", "extract", needs=("tile",), config=lambda c: {"encoder": "model"})
def extract_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """Tile features with the model's image tower, added to ``features/<case_id>.h5``."""
    from medvl.pathology.pipeline import extract_slide

    tiles, tissue = _tile_configs(ctx.config)
    config = ctx.config.slide.extract.replace(device=ctx.config.device)
    # the rule of `medvl slide extract`: features are kept only when their provenance matches (weights,
    # preprocessing, tiling, slide); writes are atomic, so kept features are complete
    record = extract_slide(_slide_job(row), ctx.layout.features, tiles, tissue, ctx.tile_encoder, config)
    if record["status"] not in ("ok", "skipped"):
        raise InputError(row.path, record.get("warning") or record["status"])
    return StepOutput({"tiles": record["tiles"], "embed_dim": record["embed_dim"]}, [record["h5"]])


def _zeroshot_config(cfg: Any, templates: str) -> Any:
    from medvl.tasks.zeroshot.classifier import ZeroShotConfig

    zs = cfg.zeroshot
    return ZeroShotConfig(templates=[templates], temperature=zs.temperature, abstain_below=zs.abstain_below)


def _zs_settings(cfg: Any) -> dict[str, Any]:
    return cfg.zeroshot.to_dict()


@register_step("slide", "zeroshot", needs=("extract",), config=_zs_settings)
def slide_zeroshot_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """Slide-level zero-shot diagnosis (+ per-tile scores): ``zeroshot/<case_id>.json`` and ``_tiles.npz``."""
    from medvl.tasks.zeroshot.run import classify_case

    ids, free = ctx.classes
    zs = ctx.config.zeroshot
    tiles_out = ctx.layout.zeroshot / f"{row.case_id}_tiles.npz"
    record = classify_case(_slide_h5(ctx, row), ctx.space, ctx.graph, ids, free,
                           _zeroshot_config(ctx.config, zs.slide_templates), method=zs.method, topk=zs.topk,
                           tile_scores_out=tiles_out)
    out = ctx.write_json(ctx.layout.zeroshot / f"{row.case_id}.json", record)
    return StepOutput(_zs_summary(record), [str(out), str(tiles_out)])


def _zs_summary(record: dict[str, Any]) -> dict[str, Any]:
    res = record.get("result") or {}
    return {"prediction": res.get("prediction"), "name": res.get("name"), "probability": res.get("probability"),
            "abstained": res.get("abstained")}


# ------------------------------------------------------------------------------------------------ CT
def _ct_case(row: ManifestRow) -> Any:
    from medvl.radiology.preprocess import CTCase

    label_map = row.get("label_map")
    if label_map is not None:
        label_map = Path(str(label_map))
        label_map = label_map if label_map.is_absolute() else row.path.parent / label_map
    series = row.get("series")
    return CTCase(path=row.path, case_id=row.case_id, labels=label_map, series=None if series is None else str(series))


def _ct_options(cfg: Any) -> dict[str, Any]:
    return {"allow_non_ct": cfg.ct.allow_non_ct, "allow_irregular": cfg.ct.allow_irregular}


def _ct_config(cfg: Any) -> dict[str, Any]:
    return {"preprocess": cfg.ct.preprocess_config().to_dict(), **_ct_options(cfg)}


@register_step("ct", "preprocess", config=_ct_config)
def preprocess_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """The one CT preprocessing chain into the workspace volume cache (``<workspace>/volumes``)."""
    from medvl.radiology.preprocess import preprocess_case

    entry = preprocess_case(_ct_case(row), ctx.ct_preprocess, ctx.volume_cache, **_ct_options(ctx.config))
    return StepOutput({"shape": list(entry.array.shape), "cached": bool(entry.hit)}, [str(entry.path)])


@register_step("ct", "embed", needs=("preprocess",), config=lambda c: {"encoder": "model"})
def embed_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """Volume embedding with the model: ``ct/<case_id>.npz`` (+ config), joint-space vectors marked as projected."""
    from medvl.radiology.embed import embed_cases

    out = ctx.layout.ct / f"{row.case_id}.npz"
    out.unlink(missing_ok=True)  # not finished per the resume state: do not let embed_cases reuse it
    summary = embed_cases([_ct_case(row)], ctx.ct_preprocess, ctx.volume_encoder, out, ctx.volume_cache,
                          batch_size=ctx.config.ct.batch_size, **_ct_options(ctx.config))
    return StepOutput({"embed_dim": summary["embed_dim"]}, [str(out), summary["config"]])


@register_step("ct", "zeroshot", needs=("embed",), config=_zs_settings)
def ct_zeroshot_step(ctx: Any, row: ManifestRow) -> StepOutput:
    """Volume zero-shot diagnosis against radiology prompts: ``zeroshot/<case_id>.json``."""
    from medvl.tasks.zeroshot.run import classify_case

    ids, free = ctx.classes
    record = classify_case(ctx.layout.ct / f"{row.case_id}.npz", ctx.space, ctx.graph, ids, free,
                           _zeroshot_config(ctx.config, ctx.config.zeroshot.ct_templates), modality="volume")
    out = ctx.write_json(ctx.layout.zeroshot / f"{row.case_id}.json", record)
    return StepOutput(_zs_summary(record), [str(out)])
