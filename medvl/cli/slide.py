"""``medvl slide info|tile|extract|heatmap|embed``: whole-slide images, one slide or a cohort manifest."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, command, echo, emit_line

app = typer.Typer(no_args_is_help=True, help="Whole-slide images: info, tile, extract, heatmap.")

InputArg = Annotated[
    Path, typer.Argument(help="A slide file, a DICOM WSI folder, or a cohort manifest (.csv/.parquet).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (one <slide_id>.h5 per slide).")]
SlideMppOpt = Annotated[
    Optional[float],  # noqa: UP045 - Typer reads Optional at runtime
    typer.Option("--slide-mpp", help="Level-0 µm/px to use when the header lacks a plausible value."),
]
MppOpt = Annotated[float, typer.Option("--mpp", help="Target tile resolution in µm/px (0.5 ~ 20x, 0.25 ~ 40x).")]
SizeOpt = Annotated[int, typer.Option("--size", help="Tile side in pixels at --mpp.")]
OverlapOpt = Annotated[int, typer.Option("--overlap", help="Overlap between neighbouring tiles, pixels at --mpp.")]
MinTissueOpt = Annotated[float, typer.Option("--min-tissue", help="Keep tiles with at least this tissue fraction.")]
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
    failed = summary["counts"].get("error", 0)
    return Result(summary, "\n".join(lines), exit_code=3 if failed else 0)


@command(app, "info")
def info(source: InputArg, slide_mpp: SlideMppOpt = None, skip_errors: SkipOpt = False):
    """Header facts: backend, vendor, levels, downsamples, mpp (and whether usable), objective, associated images."""
    from medvl.pathology.pipeline import resolve_slide_jobs, run_cohort, slide_info

    jobs = resolve_slide_jobs(source, slide_mpp)
    summary = run_cohort(jobs, slide_info, skip_errors=skip_errors, on_record=_stream(jobs))
    if len(jobs) == 1 and summary["records"][0]["status"] == "ok":
        return summary["records"][0]
    return _summary(summary, "info")


def _tile_configs(mpp: float, size: int, overlap: int, min_tissue: float):
    from medvl.pathology.tiling import TileConfig
    from medvl.pathology.tissue import TissueConfig

    return TileConfig(mpp=mpp, size=size, overlap=overlap, min_tissue=min_tissue), TissueConfig()


@command(app, "tile")
def tile(
    source: InputArg,
    out: OutOpt = Path("tiles"),
    mpp: MppOpt = 0.5,
    size: SizeOpt = 224,
    overlap: OverlapOpt = 0,
    min_tissue: MinTissueOpt = 0.25,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
):
    """Detect tissue (mask PNG + QuPath GeoJSON) and write <out>/<slide_id>.h5 with level-0 tile coords."""
    from medvl.pathology.pipeline import resolve_slide_jobs, run_cohort, tile_slide

    tiles, tissue = _tile_configs(mpp, size, overlap, min_tissue)
    jobs = resolve_slide_jobs(source, slide_mpp)
    summary = run_cohort(jobs, lambda j: tile_slide(j, out, tiles, tissue, overwrite), out_dir=out,
                         skip_errors=skip_errors, on_record=_stream(jobs))
    return _summary(summary, "tile")


@command(app, "extract")
def extract(
    source: InputArg,
    out: OutOpt = Path("features"),
    encoder: Annotated[str, typer.Option("--encoder", help="Image tower name (timm, timm-tiny, ...), a model card "
                                         "(medvl models list) or a medvl checkpoint folder.")] = "timm-tiny",
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="timm architecture for --encoder timm.")] = None,  # noqa: UP045,E501
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local weights file (.safetensors/.pth).")] = None,  # noqa: UP045,E501
    project: Annotated[bool, typer.Option("--project", help="Store joint-space embeddings (checkpoints).")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Accept pickle-based --weights (they can run "
                                               "code): only for files you made yourself.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a model card's hub code run "
                                                    "(models published with their own Python code).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    workers: Annotated[int, typer.Option("--workers", help="Tile reader threads.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    mpp: Annotated[Optional[float], typer.Option("--mpp", help="Tile resolution in µm/px (default: the model card's, "  # noqa: UP045
                                                 "else 0.5 ~ 20x).")] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="Tile side in pixels at --mpp (default: the model "  # noqa: UP045
                                                "card's, else 224).")] = None,
    overlap: OverlapOpt = 0,
    min_tissue: MinTissueOpt = 0.25,
    slide_mpp: SlideMppOpt = None,
    skip_errors: SkipOpt = False,
    overwrite: OverwriteOpt = False,
):
    """Embed every tile with an image tower; adds `features` (N x D) to <out>/<slide_id>.h5 (tiles first if needed).

    With a model card as --encoder, the card's preprocessing is applied and the slide is tiled at the card's
    resolution and tile size unless --mpp/--size say otherwise (with a warning)."""
    from medvl.pathology.extract import EncoderSpec, ExtractConfig, LazyTileEncoder, card_tiling
    from medvl.pathology.pipeline import extract_slide, resolve_slide_jobs, run_cohort

    spec = EncoderSpec(name=encoder, model_name=model_name, weights=None if weights is None else str(weights),
                       project=project, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code)
    mpp, size, warnings = card_tiling(spec, mpp, size)
    for warning in warnings:
        echo(f"warning: {warning}")
    tiles, tissue = _tile_configs(mpp, size, overlap, min_tissue)
    config = ExtractConfig(batch_size=batch_size, workers=workers, device=device)
    jobs = resolve_slide_jobs(source, slide_mpp)
    tile_encoder = LazyTileEncoder(spec)
    summary = run_cohort(jobs, lambda j: extract_slide(j, out, tiles, tissue, tile_encoder, config, overwrite),
                         out_dir=out, skip_errors=skip_errors, on_record=_stream(jobs))
    summary["warnings"] = warnings
    return _summary(summary, "extract")


@command(app, "heatmap")
def heatmap(
    source: InputArg,
    features: Annotated[Path, typer.Option("--features", help="Folder holding <slide_id>.h5 (tile or extract out).")],
    out: OutOpt = Path("heatmaps"),
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Per-tile scores (.npy or .csv) for one slide.")] = None,  # noqa: UP045,E501
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
    summary = run_cohort(jobs, lambda j: heatmap_slide(j, features, out, scores, scores_key, max_px), out_dir=out,
                         skip_errors=skip_errors, on_record=_stream(jobs))
    return _summary(summary, "heatmap")


@command(app, "embed")
def embed(
    features: Annotated[Path, typer.Argument(help="A feature .h5 (medvl slide extract, CLAM, TRIDENT) or a folder of "
                                             "them.")],
    encoder: Annotated[str, typer.Option("--encoder", help="Slide encoder: a medvl checkpoint with a bag tower "
                                         "(e.g. the model of an LV-MAE run).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings file (.npz, .parquet, .csv, .h5): one row "
                                      "per slide.")] = Path("slide_embeddings.npz"),
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
):
    """One label-free embedding per slide from its tile features (a trained bag tower over all its tiles)."""
    from medvl.pathology.slide_embed import embed_slides
    from medvl.pathology.slide_encoders import SlideEncoderSpec

    summary = embed_slides(features, SlideEncoderSpec(name=encoder, device=device), out)
    for warning in summary["warnings"]:
        echo(f"warning: {warning}")
    return Result(summary, f"{summary['slides']} slide embedding(s), {summary['dim']}-d, written to {out}")
