"""``medvl slide info|tile|extract|embed|heatmap|stain-fit``: whole-slide images, one slide or a cohort manifest.

``qupath`` and ``evaluate`` (the QuPath round trip) live in :mod:`medvl.cli.slide_regions`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import ConfigFileOpt, RandomWeightsOpt, Result, StrictDomainOpt, command, emit_line

app = typer.Typer(no_args_is_help=True,
                  help="Whole-slide images: info, tile, extract, embed, heatmap, qupath, evaluate.")

InputArg = Annotated[
    Path, typer.Argument(help="A slide file, a DICOM WSI folder, or a cohort manifest (.csv/.parquet).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (one <slide_id>.h5 per slide).")]
SlideMppOpt = Annotated[
    Optional[float],  # noqa: UP045 - Typer reads Optional at runtime
    typer.Option("--slide-mpp", help="Level-0 µm/px to use when the header lacks a plausible value."),
]
# settings default to None: a flag left out keeps the --config file's value, else the SlideSettings default
MppOpt = Annotated[Optional[float], typer.Option("--mpp", help="Target tile resolution in µm/px (0.5 ~ 20x, 0.25 ~ "  # noqa: UP045
                                                               "40x; default 0.5).", show_default=False)]
SizeOpt = Annotated[Optional[int], typer.Option("--size", help="Tile side in pixels at --mpp (default 224).",  # noqa: UP045
                                                show_default=False)]
OverlapOpt = Annotated[Optional[int], typer.Option("--overlap", help="Overlap between neighbouring tiles, pixels at "  # noqa: UP045
                                                                     "--mpp (default 0).", show_default=False)]
MinTissueOpt = Annotated[Optional[float], typer.Option("--min-tissue", help="Keep tiles with at least this tissue "  # noqa: UP045
                                                                            "fraction (default 0.25).",
                                                       show_default=False)]
SkipOpt = Annotated[bool, typer.Option("--skip-errors", help="Record failing slides in errors.json and go on.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Redo slides whose outputs already exist.")]
ArtefactsOpt = Annotated[Optional[str], typer.Option("--artefacts", help="Artefact filters removed from the tissue "  # noqa: UP045
                                                     "mask, comma-separated: pen (red/green/blue ink), blur (out of "
                                                     "focus).", show_default=False)]
SegmenterOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--segmenter", help="A deep tissue segmenter (a torch.export .pt2 program, or TorchScript or "
                 "torchvision segmentation weights with --segmenter-arch): what it does not call tissue leaves the "
                 "mask."),
]
SegmenterArchOpt = Annotated[Optional[str], typer.Option("--segmenter-arch", help="export (default), torchscript, "  # noqa: UP045
                                                         "or a torchvision segmentation builder (deeplabv3_resnet50: "
                                                         "HEST's tissue segmenter).", show_default=False)]
EncoderOpt = Annotated[Optional[str], typer.Option("--encoder", help="Image tower name (timm, timm-tiny, ...), a "  # noqa: UP045
                                                   "model card (medvl models list) or a medvl checkpoint folder "
                                                   "(default timm-tiny).", show_default=False)]
ModelNameOpt = Annotated[Optional[str], typer.Option("--model-name", help="timm architecture for --encoder timm.")]  # noqa: UP045
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Local weights file (.safetensors/.pth).")]  # noqa: UP045
ProjectOpt = Annotated[bool, typer.Option("--project", help="Store joint-space embeddings (checkpoints).")]
TrustPickleOpt = Annotated[bool, typer.Option("--trust-pickle", help="Accept pickle-based --weights (they can run "
                                              "code): only for files you made yourself.")]
TrustRemoteOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Let a model card's hub code run (models "
                                              "published with their own Python code).")]
StainOpt = Annotated[Optional[Path], typer.Option("--stain", help="Stain fit (medvl slide stain-fit) applied to "  # noqa: UP045
                                                  "every tile; saved in <out>/stain_fit.json.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Tiles per forward pass (default 64).",  # noqa: UP045
                                                 show_default=False)]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Tile reader threads (default 2).",  # noqa: UP045
                                                   show_default=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N (default auto).",  # noqa: UP045
                                                  show_default=False)]
DevicesOpt = Annotated[Optional[str], typer.Option("--devices", help="Several devices, one process each: "  # noqa: UP045
                                                   "cuda:0,cuda:1 or all (every visible GPU); the cohort is shared "
                                                   "between them.")]

#: extract's tiling options: none given keeps an existing tile store's grid; any given defines the grid (the others at
#: their defaults), and a store of another grid is tiled again
_KEEP = " Any tiling option given defines the grid; none keeps an existing tile store's."
OptMpp = Annotated[Optional[float], typer.Option("--mpp", help="Tile resolution in µm/px [0.5]." + _KEEP)]  # noqa: UP045
OptSize = Annotated[Optional[int], typer.Option("--size", help="Tile side in pixels at --mpp [224].")]  # noqa: UP045
OptOverlap = Annotated[Optional[int], typer.Option("--overlap", help="Tile overlap, pixels at --mpp [0].")]  # noqa: UP045
OptMinTissue = Annotated[Optional[float], typer.Option("--min-tissue", help="Minimum tissue fraction [0.25].")]  # noqa: UP045
AnnotationsOpt = Annotated[
    Optional[Path],  # noqa: UP045 - Typer reads Optional at runtime
    typer.Option("--annotations", help="GeoJSON regions (QuPath export, level-0 pixels; or a folder of "
                 "<slide_id>.geojson): keep only the tiles inside their polygons."),
]


def _stream(jobs: list):
    """Per-slide JSON lines for cohorts (a single slide gets just the final result)."""
    return emit_line if len(jobs) > 1 else None


def _summary(summary: dict, what: str) -> Result:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    lines = [f"{what}: {summary['slides']} slide(s): {counts}"]
    lines += [f"  {r['slide_id']}: {r['status']}" + (f" ({r.get('tiles')} tiles)" if r.get("tiles") is not None
                                                      else "") + (f" - {r['error']}" if r.get("error") else "")
              for r in summary["records"]]
    if summary.get("error_report"):
        lines.append(f"errors written to {summary['error_report']}")
    from medvl.batch import exit_code

    return Result(summary, "\n".join(lines), exit_code=exit_code(summary["records"]))


@command(app, "info")
def info(source: InputArg, slide_mpp: SlideMppOpt = None, skip_errors: SkipOpt = False):
    """Header facts: backend, vendor, levels, downsamples, mpp (and whether usable), objective, associated images."""
    from medvl.pathology.pipeline import resolve_slide_jobs, run_cohort, slide_info

    jobs = resolve_slide_jobs(source, slide_mpp)
    summary = run_cohort(jobs, slide_info, skip_errors=skip_errors, on_record=_stream(jobs))
    if len(jobs) == 1 and summary["records"][0]["status"] == "ok":
        return summary["records"][0]
    return _summary(summary, "info")


def _settings(config, mpp=None, size=None, overlap=None, min_tissue=None, artefacts=None, **extract):
    """SlideSettings from ``--config FILE`` and the flags given (``artefacts``: the tissue's artefact settings)."""
    from medvl.cli.flags import config_from
    from medvl.pathology.settings import SlideSettings

    return config_from(SlideSettings, config, tiles={"mpp": mpp, "size": size, "overlap": overlap,
                                                     "min_tissue": min_tissue},
                       tissue={"artefacts": artefacts or {}}, extract=extract)


def _artefacts(artefacts: str | None, segmenter: Path | None, segmenter_arch: str | None) -> dict:
    """The artefact settings the flags give (``None`` values: not given, the --config file's or the defaults)."""
    filters = None if artefacts is None else [f.strip() for f in artefacts.split(",") if f.strip()]
    if segmenter is not None and "segmenter" not in (filters or []):
        filters = [*(filters or []), "segmenter"]
    return {"filters": filters, "segmenter": {"path": None if segmenter is None else str(segmenter),
                                              "arch": segmenter_arch}}


def _extract_tiling(spec, config, mpp, size, overlap, min_tissue):
    """``(mpp, size, given)`` for extract: a model card's tiling unless the flags or the --config file say otherwise
    (with a warning); ``given`` is False when nothing chose a grid (an existing tile store's grid is then kept)."""
    from medvl.config import read_config_file
    from medvl.log import warn
    from medvl.pathology.extract import card_of, card_tiling

    chosen = (read_config_file(config).get("tiles") or {}) if config is not None else {}
    given = any(v is not None for v in (mpp, size, overlap, min_tissue)) or bool(chosen)
    if card_of(spec) is None:
        return mpp, size, given
    mpp, size, warnings = card_tiling(spec, mpp if mpp is not None else chosen.get("mpp"),
                                      size if size is not None else chosen.get("size"))
    for warning in warnings:
        warn(warning)
    return mpp, size, True


@command(app, "tile")
def tile(
    source: InputArg,
    out: OutOpt = Path("tiles"),
    config: ConfigFileOpt = None,
    mpp: MppOpt = None,
    size: SizeOpt = None,
    overlap: OverlapOpt = None,
    min_tissue: MinTissueOpt = None,
    artefacts: ArtefactsOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_arch: SegmenterArchOpt = None,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
    annotations: AnnotationsOpt = None,
    dicom_seg: Annotated[Optional[Path], typer.Option("--dicom-seg", help="Also write the tissue mask as a DICOM SEG (with its source image) into this folder.")] = None,  # noqa: UP045, E501
    tile_scores: Annotated[Optional[Path], typer.Option("--tile-scores", help="With --dicom-seg: one segment per class of these tile scores (medvl zeroshot --tile-scores; one slide).")] = None,  # noqa: UP045, E501
    seg_threshold: Annotated[float, typer.Option("--seg-threshold", help="Probability at which a tile joins its class segment.")] = 0.5,  # noqa: E501
):
    """Detect tissue (mask PNG + QuPath GeoJSON) and write <out>/<slide_id>.h5 with level-0 tile coords."""
    from medvl.errors import ConfigError
    from medvl.pathology.pipeline import resolve_slide_jobs, run_cohort, tile_slide

    cfg = _settings(config, mpp, size, overlap, min_tissue, _artefacts(artefacts, segmenter, segmenter_arch))
    jobs = resolve_slide_jobs(source, slide_mpp)
    if tile_scores is not None and (dicom_seg is None or len(jobs) > 1):
        raise ConfigError("--tile-scores goes with --dicom-seg, for one slide")
    on_grid = None
    if dicom_seg is not None:
        from medvl.tasks.interop.seg import SlideSegWriter

        on_grid = SlideSegWriter(dicom_seg, tile_scores, seg_threshold)
    summary = run_cohort(jobs, lambda j: tile_slide(j, out, cfg.tiles, cfg.tissue, overwrite, on_grid=on_grid,
                                                    annotations=annotations),
                         out_dir=out,
                         skip_errors=skip_errors, on_record=_stream(jobs))
    return _summary(summary, "tile")


@command(app, "extract")
def extract(
    source: InputArg,
    out: OutOpt = Path("features"),
    encoder: EncoderOpt = None,
    model_name: ModelNameOpt = None,
    weights: WeightsOpt = None,
    project: ProjectOpt = False,
    random_weights: RandomWeightsOpt = False,
    strict_domain: StrictDomainOpt = False,
    trust_pickle: TrustPickleOpt = False,
    trust_remote_code: TrustRemoteOpt = False,
    config: ConfigFileOpt = None,
    stain: StainOpt = None,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    devices: DevicesOpt = None,
    mpp: OptMpp = None,
    size: OptSize = None,
    overlap: OptOverlap = None,
    min_tissue: OptMinTissue = None,
    artefacts: ArtefactsOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_arch: SegmenterArchOpt = None,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
    annotations: AnnotationsOpt = None,
):
    """Embed every tile with an image tower; adds `features` (N x D) to <out>/<slide_id>.h5 (tiles first if needed).

    Finished slides are skipped only when their provenance (weights, preprocessing, stain fit, tiling, slide)
    matches; anything else is recomputed. With a model card as --encoder, the card's preprocessing is applied and the
    slide is tiled at the card's resolution and tile size unless --mpp/--size (or the --config file) say otherwise
    (with a warning).
    """
    from medvl.cli.flags import config_from
    from medvl.pathology.extract import EncoderSpec
    from medvl.pathology.pipeline import resolve_slide_jobs

    spec = config_from(EncoderSpec, None, name=encoder, model_name=model_name,
                       weights=None if weights is None else str(weights), project=project, trust_pickle=trust_pickle,
                       trust_remote_code=trust_remote_code, random_weights=random_weights,
                       strict_domain=strict_domain, stain=None if stain is None else str(stain))
    mpp, size, given = _extract_tiling(spec, config, mpp, size, overlap, min_tissue)
    cfg = _settings(config, mpp, size, overlap, min_tissue, _artefacts(artefacts, segmenter, segmenter_arch),
                    batch_size=batch_size, workers=workers, device=device)
    tiles = cfg.tiles if given else None  # no tiling option: an existing tile store's grid is kept
    jobs = resolve_slide_jobs(source, slide_mpp)
    summary = _run_extract(jobs, out, tiles, cfg.tissue, spec, cfg.extract, devices, overwrite, skip_errors,
                           annotations)
    return _summary(summary, "extract")


def _run_extract(jobs, out, tiles, tissue, spec, config, devices, overwrite, skip_errors, annotations=None) -> dict:
    """One process (``run_cohort``), or one per device (``--devices``); the stain fit is saved with the outputs."""
    from medvl.pathology.extract import LazyTileEncoder
    from medvl.pathology.pipeline import extract_slide, run_cohort

    if spec.stain is not None:
        from medvl.pathology.stain import StainFit

        StainFit.load(spec.stain).save(out / "stain_fit.json")
    if devices is not None and annotations is not None:
        from medvl.errors import ConfigError

        raise ConfigError("--annotations runs on one device: leave out --devices")
    if devices is not None:
        from medvl.pathology.shard import extract_sharded, resolve_devices

        return extract_sharded(jobs, out, tiles, tissue, spec, config, resolve_devices(devices), overwrite,
                               skip_errors, on_record=_stream(jobs))
    encoder = LazyTileEncoder(spec)
    return run_cohort(jobs, lambda j: extract_slide(j, out, tiles, tissue, encoder, config, overwrite, annotations),
                      out_dir=out, skip_errors=skip_errors, on_record=_stream(jobs))


@command(app, "heatmap")
def heatmap(
    source: InputArg,
    features: Annotated[Path, typer.Option("--features", help="Folder holding <slide_id>.h5 (tile or extract out).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (one <slide_id>_heatmap.png per slide).")] = Path("heatmaps"),  # noqa: E501
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Per-tile scores of one slide: .npy, .csv, or "  # noqa: UP045
                                                   "the .npz of 'medvl zeroshot --tile-scores'.")] = None,
    scores_class: Annotated[Optional[str], typer.Option("--scores-class", help="Class column of a --scores .npz "  # noqa: UP045
                                                        "with several classes (a concept id).")] = None,
    scores_key: Annotated[str, typer.Option("--scores-key", help="Per-tile dataset in the h5 to draw.")] = "tissue_fraction",  # noqa: E501
    max_px: Annotated[int, typer.Option("--max-px", help="Longest side of the thumbnail.")] = 1024,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
):
    """Per-tile scores over the thumbnail, with a colour bar: <out>/<slide_id>_heatmap.png."""
    from medvl.errors import ConfigError
    from medvl.pathology.pipeline import heatmap_slide, resolve_slide_jobs, run_cohort

    jobs = resolve_slide_jobs(source, slide_mpp)
    if scores is not None and len(jobs) > 1:
        raise ConfigError("--scores takes one slide's scores; for a cohort store them in each h5 and use --scores-key")
    summary = run_cohort(jobs, lambda j: heatmap_slide(j, features, out, scores, scores_key, max_px,
                                                                   scores_class), out_dir=out,
                         skip_errors=skip_errors, on_record=_stream(jobs))
    return _summary(summary, "heatmap")


@command(app, "embed")
def embed(
    features: Annotated[Path, typer.Argument(help="A feature .h5 (medvl slide extract, CLAM, TRIDENT) or a folder of "
                                             "them.")],
    encoder: Annotated[str, typer.Option("--encoder", help="Slide encoder: a slide model card (medvl models list "
                                         "--modality slide) or a slide-encoder checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings file (.npz, .parquet, .csv, .h5): one row "
                                      "per slide.")] = Path("slide_embeddings.npz"),
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local weights (default: the model store).")] = None,  # noqa: UP045,E501
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Accept pickle-based weights (they can run "
                                               "code).")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Run the hub code shipped with the "
                                                    "weights instead of medvl's own implementation.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    skip_errors: SkipOpt = False,
):
    """One embedding per slide from its tile features; tile encoder, resolution, tile size and coordinates are
    checked against the slide encoder's card first."""
    from medvl.pathology.slide_embed import embed_slides
    from medvl.pathology.slide_encoders import SlideEncoderSpec

    spec = SlideEncoderSpec(name=encoder, weights=None if weights is None else str(weights),
                            trust_pickle=trust_pickle, trust_remote_code=trust_remote_code, device=device)
    summary = embed_slides(features, spec, out, skip_errors=skip_errors)
    from medvl.log import warn

    for warning in summary["warnings"]:
        warn(warning)  # stderr once, and the --json output's warnings
    return _summary(summary, "embed")


@command(app, "stain-fit")
def stain_fit(
    reference: Annotated[Path, typer.Argument(help="Reference: an image tile (.png/.jpg) or a slide (its most "
                                              "tissue-covered tiles are used).")],
    method: Annotated[str, typer.Option("--method", help="macenko, reinhard or vahadane.")] = "macenko",
    out: Annotated[Path, typer.Option("--out", "-o", help="The fit (JSON), for extract --stain.")] = Path(
        "stain_fit.json"),
):
    """Fit a stain normalisation once on a reference tile or slide; extract --stain applies it to every tile."""
    from medvl.pathology.stain import StainConfig, fit_stain

    fit = fit_stain(reference, StainConfig(method=method))
    fit.save(out)
    return Result({"out": str(out), "method": fit.method, "fingerprint": fit.fingerprint(), "params": fit.params},
                  f"{fit.method} stain fit written to {out} (fingerprint {fit.fingerprint()})")


from medvl.cli import slide_regions  # noqa: E402,F401 - registers 'slide qupath' and 'slide evaluate' on this app
