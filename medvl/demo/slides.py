"""Demo step "slides": tissue mask, tile grid and tile features of the bundled slide in the workspace."""

from __future__ import annotations

from typing import Any

from medvl.demo.layout import SLIDE_FILE, TILE_ENCODER
from medvl.demo.steps import demo_step
from medvl.errors import InputError
from medvl.workspace import Workspace


@demo_step("slides", "detect tissue, tile at 0.5 µm/px and extract tile features of the demo slide", needs=("data",))
def step_slides(ws: Workspace) -> dict[str, Any]:
    from medvl.pathology.extract import EncoderSpec, ExtractConfig, LazyTileEncoder
    from medvl.pathology.pipeline import SlideJob, extract_slide, heatmap_slide
    from medvl.pathology.tiling import TileConfig
    from medvl.pathology.tissue import TissueConfig

    path = ws.slides / SLIDE_FILE
    if not path.is_file():
        raise InputError(path, "demo slide missing (the 'data' step copies it)")
    job = SlideJob(slide_id=path.stem, path=path)
    ws.features.mkdir(parents=True, exist_ok=True)
    # the tiny tile encoder has no weights: asked for explicitly, and recorded in the features' provenance
    encoder = LazyTileEncoder(EncoderSpec(name=TILE_ENCODER, random_weights=True))
    record = extract_slide(job, ws.features, TileConfig(mpp=0.5, size=224, min_tissue=0.25), TissueConfig(),
                           encoder, ExtractConfig(batch_size=32, workers=2, device="cpu"))
    heat = ws.features / f"{job.slide_id}_heatmap.png"
    if not heat.exists():
        heatmap_slide(job, ws.features, ws.features, scores_key="tissue_fraction", max_px=768)
    return {
        "slide": str(path.relative_to(ws.root)),
        "status": record["status"],
        "h5": str((ws.features / f"{job.slide_id}.h5").relative_to(ws.root)),
        "mask_png": f"features/{job.slide_id}_tissue.png",
        "geojson": f"features/{job.slide_id}_tissue.geojson",
        "heatmap_png": str(heat.relative_to(ws.root)),
        "encoder": TILE_ENCODER,
        "random_weights": True,
    }
