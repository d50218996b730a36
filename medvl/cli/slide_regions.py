"""``medvl slide qupath|evaluate``: the QuPath round trip (tile scores out as detections, annotations in)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, command
from medvl.cli.slide import SlideMppOpt, app

SlideArg = Annotated[Path, typer.Argument(help="The slide the scores belong to (its size checks the frame).")]
ScoresOpt = Annotated[Path, typer.Option("--tile-scores", help="Per-tile class probabilities: the .npz of "
                                         "'medvl zeroshot --tile-scores'.")]


def _dimensions(slide_path: Path, slide_mpp: float | None) -> tuple[int, int]:
    from medvl.io.slide import open_slide

    with open_slide(slide_path, mpp=slide_mpp) as slide:
        return slide.dimensions


def _check_on_slide(coords, size: float, dims: tuple[int, int], where: Path) -> None:
    from medvl.errors import InputError

    if len(coords) and ((coords[:, 0] + size).max() > dims[0] * 1.01 or (coords[:, 1] + size).max() > dims[1] * 1.01):
        raise InputError(where, f"tiles reach beyond the slide ({dims[0]} x {dims[1]}): scores of another slide?")


@command(app, "qupath")
def qupath(
    slide: SlideArg,
    tile_scores: ScoresOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="GeoJSON file to write (QuPath: File > Import objects).")],
    slide_mpp: SlideMppOpt = None,
) -> Result:
    """Tile scores as QuPath detections: one square per tile, its top class, one probability measurement per class."""
    from medvl.pathology.qupath import write_detections
    from medvl.pathology.regions import tile_scores_file

    s = tile_scores_file(tile_scores)
    _check_on_slide(s["coords"], s["patch_size_level0"], _dimensions(slide, slide_mpp), tile_scores)
    write_detections(out, s["coords"], s["patch_size_level0"], s["scores"], s["class_names"])
    data = {"path": str(out), "detections": len(s["coords"]), "classes": s["class_names"]}
    return Result(data, f"{len(s['coords'])} detections ({len(s['class_names'])} classes) -> {out}")


@command(app, "evaluate")
def evaluate(
    slide: SlideArg,
    tile_scores: ScoresOpt,
    annotations: Annotated[Path, typer.Option("--annotations", help="GeoJSON regions (QuPath export, level-0 "
                                              "pixels).")],
    class_id: Annotated[Optional[str], typer.Option("--class", help="Class (concept id) of the heatmap; default: "  # noqa: UP045
                                                    "the first column.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Probability at which a tile counts as positive "
                                             "(Dice).")] = 0.5,
    slide_mpp: SlideMppOpt = None,
) -> Result:
    """A heatmap against annotated regions: Dice (thresholded tiles vs the region's tiles) and AUC, per region."""
    from medvl.errors import InputError
    from medvl.pathology.regions import evaluate_regions, load_regions, tile_scores_file

    s = tile_scores_file(tile_scores)
    dims = _dimensions(slide, slide_mpp)
    regions = load_regions(annotations, dims)
    column = 0 if class_id is None else (s["class_ids"].index(class_id) if class_id in s["class_ids"] else -1)
    if column < 0:
        raise InputError(tile_scores, f"no class '{class_id}' (has: {', '.join(s['class_ids'])})")
    if s["patch_size_level0"] <= 0:
        raise InputError(tile_scores, "the tile size is not recorded (scores from an older medvl): run medvl "
                                      "zeroshot --tile-scores again")
    _check_on_slide(s["coords"], s["patch_size_level0"], dims, tile_scores)
    rows = evaluate_regions(s["coords"], s["patch_size_level0"], s["scores"][:, column], regions, threshold)
    cls = s["class_ids"][column]
    text = "\n".join(f"{r['region']}: {r['tiles_inside']} tiles, Dice {_fmt(r['dice'])}, AUC {_fmt(r['auc'])}"
                     for r in rows)
    return Result({"class": cls, "threshold": threshold, "regions": rows}, f"class {cls}\n{text}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
