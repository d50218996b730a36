"""``medvl slide info|tile|extract|heatmap``: whole-slide images, one slide or a cohort manifest."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import ConfigFileOpt, Result, command, emit_line

app = typer.Typer(no_args_is_help=True, help="Whole-slide images: info, tile, extract, heatmap.")

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


def _settings(config, mpp=None, size=None, overlap=None, min_tissue=None, **extract):
    """SlideSettings from ``--config FILE`` and the flags given."""
    from medvl.cli.flags import config_from
    from medvl.pathology.settings import SlideSettings

    return config_from(SlideSettings, config, tiles={"mpp": mpp, "size": size, "overlap": overlap,
                                                     "min_tissue": min_tissue}, extract=extract)


@command(app, "tile")
def tile(
    source: InputArg,
    out: OutOpt = Path("tiles"),
    config: ConfigFileOpt = None,
    mpp: MppOpt = None,
    size: SizeOpt = None,
    overlap: OverlapOpt = None,
    min_tissue: MinTissueOpt = None,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
):
    """Detect tissue (mask PNG + QuPath GeoJSON) and write <out>/<slide_id>.h5 with level-0 tile coords."""
    from medvl.pathology.pipeline import resolve_slide_jobs, run_cohort, tile_slide

    cfg = _settings(config, mpp, size, overlap, min_tissue)
    jobs = resolve_slide_jobs(source, slide_mpp)
    summary = run_cohort(jobs, lambda j: tile_slide(j, out, cfg.tiles, cfg.tissue, overwrite), out_dir=out,
                         skip_errors=skip_errors, on_record=_stream(jobs))
    return _summary(summary, "tile")


@command(app, "extract")
def extract(
    source: InputArg,
    out: OutOpt = Path("features"),
    encoder: Annotated[Optional[str], typer.Option("--encoder", help="Image tower name (timm, timm-tiny, ...), a "  # noqa: UP045
                                                   "model card (medvl models list) or a medvl checkpoint folder "
                                                   "(default timm-tiny).", show_default=False)] = None,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="timm architecture for --encoder timm.")] = None,  # noqa: UP045,E501
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local weights file (.safetensors/.pth).")] = None,  # noqa: UP045,E501
    project: Annotated[bool, typer.Option("--project", help="Store joint-space embeddings (checkpoints).")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Accept pickle-based --weights (they can run "
                                               "code): only for files you made yourself.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a model card's hub code run "
                                                    "(models published with their own Python code).")] = False,
    config: ConfigFileOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Tiles per forward pass (default 64).",  # noqa: UP045
                                                      show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Tile reader threads (default 2).",  # noqa: UP045
                                                   show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N (default auto).",  # noqa: UP045
                                                  show_default=False)] = None,
    mpp: Annotated[Optional[float], typer.Option("--mpp", help="Tile resolution in µm/px (default: the model card's, "  # noqa: UP045
                                                 "else 0.5 ~ 20x).", show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="Tile side in pixels at --mpp (default: the model "  # noqa: UP045
                                                "card's, else 224).", show_default=False)] = None,
    overlap: OverlapOpt = None,
    min_tissue: MinTissueOpt = None,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
):
    """Embed every tile with an image tower; adds `features` (N x D) to <out>/<slide_id>.h5 (tiles first if needed).

    With a model card as --encoder, the card's preprocessing is applied and the slide is tiled at the card's
    resolution and tile size unless --mpp/--size (or the --config file) say otherwise (with a warning)."""
    from medvl.cli.flags import config_from
    from medvl.config import read_config_file
    from medvl.log import get_logger
    from medvl.pathology.extract import EncoderSpec, LazyTileEncoder, card_tiling
    from medvl.pathology.pipeline import extract_slide, resolve_slide_jobs, run_cohort

    spec = config_from(EncoderSpec, None, name=encoder, model_name=model_name,
                       weights=None if weights is None else str(weights), project=project, trust_pickle=trust_pickle,
                       trust_remote_code=trust_remote_code)
    chosen = read_config_file(config).get("tiles") or {} if config is not None else {}
    mpp, size, warnings = card_tiling(spec, mpp if mpp is not None else chosen.get("mpp"),
                                      size if size is not None else chosen.get("size"))
    for warning in warnings:
        get_logger("medvl.cli.slide").warning(warning)  # stderr once, and the JSON output's warnings
    cfg = _settings(config, mpp, size, overlap, min_tissue, batch_size=batch_size, workers=workers, device=device)
    jobs = resolve_slide_jobs(source, slide_mpp)
    tile_encoder = LazyTileEncoder(spec)
    summary = run_cohort(jobs, lambda j: extract_slide(j, out, cfg.tiles, cfg.tissue, tile_encoder, cfg.extract,
                                                       overwrite),
                         out_dir=out, skip_errors=skip_errors, on_record=_stream(jobs))
    summary["warnings"] = warnings
    return _summary(summary, "extract")


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
