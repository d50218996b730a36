"""``medvl ct info|preprocess|embed|slices``: CT volumes (a DICOM series folder, a NIfTI file, or a manifest)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from medvl.cli.common import RandomWeightsOpt, Result, StrictDomainOpt, WorkspaceOpt, command, emit_line

app = typer.Typer()

InputArg = Annotated[
    Path, typer.Argument(help="DICOM series folder, NIfTI file, or manifest (.csv/.tsv/.parquet).")
]
SeriesOpt = Annotated[
    str | None, typer.Option("--series", help="Series to read from a DICOM folder: SeriesNumber or SeriesInstanceUID.")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="CTPreprocessConfig file (YAML/JSON); options below override it.")
]
WindowOpt = Annotated[str | None, typer.Option("--window", help="HU window preset: abdomen, lung, bone, brain, "
                                                               "soft_tissue.")]
LevelOpt = Annotated[float | None, typer.Option("--level", help="Custom window level (HU); needs --width.")]
WidthOpt = Annotated[float | None, typer.Option("--width", help="Custom window width (HU); needs --level.")]
SpacingOpt = Annotated[str | None, typer.Option("--spacing", help="Target voxel size x,y,z in mm (e.g. 1.5,1.5,3).")]
SizeOpt = Annotated[str | None, typer.Option("--size", help="Output size x,y,z in voxels (e.g. 128,128,32).")]
FgOpt = Annotated[bool | None, typer.Option("--foreground-crop/--no-foreground-crop", help="Crop to the body.")]
LabelsOpt = Annotated[Path | None, typer.Option("--labels", help="Label map (NIfTI, e.g. TotalSegmentator) for "
                                                                 "--organ.")]
OrganOpt = Annotated[
    list[str] | None, typer.Option("--organ", help="Crop around this organ (name, group like 'kidneys', or label id).")
]
BoxOpt = Annotated[str | None, typer.Option("--box-mm", help="Organ box size x,y,z in mm (default 160,160,96).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Cache folder (default: <workspace>/volumes).")]
NonCtOpt = Annotated[bool, typer.Option("--allow-non-ct", help="Accept non-CT series (MR, PT...) for CT models.")]
IrregularOpt = Annotated[bool, typer.Option("--allow-irregular", help="Accept series with missing slices (inside "
                                                                     "or at an edge) or irregular spacing.")]
SkipOpt = Annotated[bool, typer.Option("--skip-errors", help="Record failing cases and go on (exit 3 when some "
                                                             "failed); otherwise the first failure stops the batch.")]


def _triple(text: str | None, name: str, kind: type) -> list[Any] | None:
    from medvl.errors import ConfigError

    if text is None:
        return None
    try:
        values = [kind(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise ConfigError(f"{name}: expected three comma-separated numbers x,y,z, got {text!r}")
    return values


def _preprocess_config(config, window, level, width, spacing, size, foreground, organ, box_mm):
    """The typed config from a file and the command-line overrides."""
    from medvl.radiology.transforms import CTPreprocessConfig

    base = CTPreprocessConfig.from_file(config) if config else CTPreprocessConfig()
    data = base.to_dict()
    if level is not None or width is not None:
        data.update(window=None, level=level, width=width)
    if window is not None:
        data.update(window=window, level=None, width=None)
    overrides = {"spacing": _triple(spacing, "--spacing", float), "spatial_size": _triple(size, "--size", int),
                 "foreground_crop": foreground}
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    if organ:
        crop = dict(data.get("organ_crop") or {})
        crop["labels"] = list(organ)
        data["organ_crop"] = crop
    if box_mm is not None:
        data["organ_crop"] = {**(data.get("organ_crop") or {}), "box_mm": _triple(box_mm, "--box-mm", float)}
    return CTPreprocessConfig.from_dict(data, source=str(config) if config else None)


def _cases(path: Path, labels: Path | None, series: str | None):
    from medvl.radiology.cases import read_ct_cases

    return read_ct_cases(path, labels=labels, series=series)


def _is_manifest(path: Path) -> bool:
    from medvl.radiology.cases import MANIFEST_SUFFIXES

    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


@command(app, "info")
def info(path: InputArg, series: SeriesOpt = None, skip_errors: SkipOpt = False) -> Result:
    """Shape, spacing (x, y, z mm), orientation, HU range, slices, series found and warnings of CT volumes."""
    from medvl.batch import BatchPolicy, exit_code
    from medvl.io.volume import load_volume, volume_info

    cases = _cases(path, None, series)
    policy = BatchPolicy(skip_errors)
    records = []
    for case in cases:
        try:
            volume = load_volume(case.path, series=case.series)
            rec = {"case_id": case.case_id, "status": "ok", **volume_info(volume)}
            _warn(volume.warnings, case.case_id if _is_manifest(path) else None)
        except Exception as exc:  # noqa: BLE001 - the batch policy decides: stop with one error line, or record
            rec = policy.fail(case.case_id, exc, case.path, path=str(case.path))
        if _is_manifest(path):
            emit_line(rec)
        records.append(rec)
    failed = sum(1 for r in records if r.get("status") == "error")
    data: Any = records[0] if len(records) == 1 else {"cases": records, "failed": failed}
    return Result(data, "\n\n".join(_info_text(r) for r in records), exit_code=exit_code(records))


def _warn(warnings: list[str], case_id: str | None) -> None:
    """A volume's reading warnings, through the log: stderr in human mode and the ``warnings`` of ``--json``."""
    from medvl.log import get_logger

    log = get_logger("medvl.ct")
    for w in warnings:
        log.warning("%s%s", f"{case_id}: " if case_id else "", w)


def _info_text(rec: dict[str, Any]) -> str:
    if rec.get("status") == "error":
        return f"{rec['case_id']}: error: {rec['error']}"
    lines = [
        f"{rec['case_id']}: {rec['path']}",
        f"  modality     {rec['modality']}  ({rec['format']})",
        f"  shape        {' x '.join(map(str, rec['shape']))} voxels, {rec['slices']} slices",
        f"  spacing      {', '.join(f'{s:g}' for s in rec['spacing_mm'])} mm (x, y, z)",
        f"  orientation  {rec['orientation']}",
        f"  HU range     {rec['hu_min']:g} .. {rec['hu_max']:g}",
    ]
    for s in rec["series_found"]:
        lines.append(f"  series       {s['series_number']} {s['modality']} {s['files']} files ({s['series_uid']})")
    return "\n".join(lines)  # the warnings went to stderr, once, with the other warnings of the run


def _cache(cache: Path | None, workspace: Path | None, config):
    from medvl.radiology.cache import VolumeCache
    from medvl.workspace import Workspace

    root = cache if cache is not None else Workspace.resolve(workspace, create=True).volumes
    return VolumeCache(root, config)


@command(app, "preprocess")
def preprocess(
    path: InputArg,
    config: ConfigOpt = None,
    window: WindowOpt = None,
    level: LevelOpt = None,
    width: WidthOpt = None,
    spacing: SpacingOpt = None,
    size: SizeOpt = None,
    foreground_crop: FgOpt = None,
    labels: LabelsOpt = None,
    organ: OrganOpt = None,
    box_mm: BoxOpt = None,
    series: SeriesOpt = None,
    cache: CacheOpt = None,
    allow_non_ct: NonCtOpt = False,
    allow_irregular: IrregularOpt = False,
    skip_errors: SkipOpt = False,
    workspace: WorkspaceOpt = None,
    dicom_seg: Annotated[Path | None, typer.Option("--dicom-seg", help="Also write the region the model sees (the chain's crop) as a DICOM SEG of the source series into this folder.")] = None,  # noqa: E501
) -> Result:
    """Preprocess CT volumes with the one medvl chain into the cache (RAS, spacing, HU window, crops, size)."""
    from medvl.batch import exit_code
    from medvl.radiology.preprocess import iter_preprocess

    cfg = _preprocess_config(config, window, level, width, spacing, size, foreground_crop, organ, box_mm)
    store = _cache(cache, workspace, cfg)
    cases = _cases(path, labels, series)
    records = []
    for res in iter_preprocess(cases, cfg, store, skip_errors=skip_errors, allow_non_ct=allow_non_ct,
                               allow_irregular=allow_irregular):
        rec = res.record()
        if dicom_seg is not None and rec["status"] != "error":
            rec.update(_write_seg(dicom_seg, res, cfg, skip_errors))
        if _is_manifest(path):
            emit_line(rec)
        records.append(rec)
    failed = [r for r in records if r["status"] == "error"]
    data = {"cases": len(records), "cached": sum(r["status"] == "cached" for r in records), "failed": len(failed),
            "cache_dir": str(store.dir), "config": cfg.to_dict(), "records": records}
    text = "\n".join(
        f"{r['case_id']}: {r['status']}" + (f" {r['error']}" if r["status"] == "error" else f" -> {r['cache']}")
        for r in records
    )
    return Result(data, text, exit_code=exit_code(records))


def _write_seg(out: Path, res, cfg, skip_errors: bool) -> dict:
    from medvl.errors import MedvlError
    from medvl.tasks.interop.ctseg import write_ct_seg

    case = res.case
    try:
        return write_ct_seg(out, case.path, cfg, case.labels, case.series)
    except MedvlError as exc:
        if not skip_errors:
            raise
        return {"status": "error", "error": str(exc)}


@command(app, "embed")
def embed(
    path: InputArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings file (case ids): .npz, .parquet, .csv, .h5.")],
    tower: Annotated[str | None, typer.Option("--tower", help="Registered volume tower (e.g. resnet3d-tiny).")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="medvl checkpoint directory.")] = None,
    encoder: Annotated[str | None, typer.Option("--encoder", help="A CT model card (medvl models list --modality ct) "
                                                "whose weights are installed in the model store (medvl models "
                                                "unpack), or given with --weights.")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="With --encoder: the card's weights file or "
                                                 "folder instead of the store's.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    config: ConfigOpt = None,
    window: WindowOpt = None,
    level: LevelOpt = None,
    width: WidthOpt = None,
    spacing: SpacingOpt = None,
    size: SizeOpt = None,
    foreground_crop: FgOpt = None,
    labels: LabelsOpt = None,
    organ: OrganOpt = None,
    box_mm: BoxOpt = None,
    series: SeriesOpt = None,
    cache: CacheOpt = None,
    allow_non_ct: NonCtOpt = False,
    allow_irregular: IrregularOpt = False,
    skip_errors: SkipOpt = False,
    random_weights: RandomWeightsOpt = False,
    strict_domain: StrictDomainOpt = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Embed CT volumes with a volume tower, a checkpoint or a CT model card; writes embeddings + case ids and the
    resolved config.

    A checkpoint's stored CT chain, or a model card's (spacing, size, HU window), replaces the chain options.
    Cases already in --out are kept only when their provenance (weights, CT chain, input files) matches.
    """
    from medvl.batch import exit_code
    from medvl.radiology.embed import embed_cases

    encoder = _volume_encoder(tower, model, encoder, weights, device, random_weights, strict_domain)
    cfg = _preprocess_config(config, window, level, width, spacing, size, foreground_crop, organ, box_mm)
    cfg = _fit_encoder(cfg, encoder, explicit=config is not None or size is not None)
    summary = embed_cases(_cases(path, labels, series), cfg, encoder, out, _cache(cache, workspace, cfg),
                          batch_size=batch_size, skip_errors=skip_errors, allow_non_ct=allow_non_ct,
                          allow_irregular=allow_irregular)
    text = (f"embedded {summary['embedded']} case(s) ({summary['reused']} reused), dim {summary['embed_dim']} -> "
            f"{summary['out']}" + "".join(f"\n{f['case_id']}: error: {f['error']}" for f in summary["failed"]))
    return Result(summary, text, exit_code=exit_code(summary["failed"]))


@command(app, "slices")
def slices(
    path: InputArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for one <case_id>.h5 of slice features per volume.")],
    tower: Annotated[str, typer.Option("--tower", help="2.5-D volume tower (slices2.5d, slices2.5d-tiny).")] = (
        "slices2.5d"),
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    config: ConfigOpt = None,
    window: WindowOpt = None,
    level: LevelOpt = None,
    width: WidthOpt = None,
    spacing: SpacingOpt = None,
    size: SizeOpt = None,
    foreground_crop: FgOpt = None,
    organ: OrganOpt = None,
    box_mm: BoxOpt = None,
    series: SeriesOpt = None,
    cache: CacheOpt = None,
    allow_non_ct: NonCtOpt = False,
    allow_irregular: IrregularOpt = False,
    skip_errors: SkipOpt = False,
    random_weights: RandomWeightsOpt = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Write each volume as a bag of slice embeddings (the 2.5-D tower per slice): the input of LV-MAE over CT."""
    from medvl.batch import exit_code
    from medvl.radiology.embed import resolve_device
    from medvl.radiology.slices import slice_bags

    cfg = _preprocess_config(config, window, level, width, spacing, size, foreground_crop, organ, box_mm)
    summary = slice_bags(_cases(path, None, series), cfg, tower, out, _cache(cache, workspace, cfg),
                         device=resolve_device(device), skip_errors=skip_errors, random_weights=random_weights,
                         allow_non_ct=allow_non_ct, allow_irregular=allow_irregular)
    text = (f"wrote {summary['written']} slice bag(s) of {summary['dim']}-d slice features to {summary['out']}"
            + "".join(f"\n{f['case_id']}: error: {f['error']}" for f in summary["failed"]))
    return Result(summary, text, exit_code=exit_code(summary["failed"]))


def _volume_encoder(tower, model, card, weights, device, random_weights, strict_domain):
    """The encoder of exactly one of --tower, --model or --encoder."""
    from medvl.errors import ConfigError

    if sum(x is not None for x in (tower, model, card)) != 1:
        raise ConfigError("give exactly one of --tower NAME, --model CHECKPOINT_DIR or --encoder CARD")
    if weights is not None and card is None:
        raise ConfigError("--weights goes with --encoder CARD")
    if card is not None:
        from medvl.radiology.card_encoder import load_card_volume_encoder

        return load_card_volume_encoder(card, weights, device)
    from medvl.radiology.embed import load_volume_encoder

    return load_volume_encoder(str(model) if model is not None else tower, device=device,
                               random_weights=random_weights, strict_domain=strict_domain)


def _fit_encoder(cfg, encoder, explicit: bool):
    """Use the checkpoint's stored preprocessing; match a fixed-size tower's input unless the user chose a size."""
    from medvl.errors import ConfigError

    if encoder.preprocess is not None:
        return encoder.preprocess
    if encoder.input_shape is None:
        return cfg
    want = tuple(reversed(encoder.input_shape))
    if tuple(cfg.spatial_size) == want:
        return cfg
    if explicit:
        raise ConfigError(f"{encoder.name} takes volumes of {encoder.input_shape} (D, H, W): use --size "
                          f"{','.join(map(str, want))}")
    return cfg.replace(spatial_size=want)
