"""Per-slide steps (info, tile, extract, heatmap) and the cohort runner the CLI and the demo call.

Every step takes one :class:`SlideJob` and returns a JSON-able record. :func:`run_cohort` runs a step over many
slides: finished slides are skipped (resume), outputs are written atomically (a failure leaves no partial h5), and
with ``skip_errors`` a failing slide is recorded in ``errors.json`` instead of stopping the run.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl import __version__
from medvl.atomic import sweep_temporaries
from medvl.batch import BatchPolicy, counts, write_error_report
from medvl.errors import InputError, reason
from medvl.io.features import H5_ERRORS, FeatureStore, TileTable
from medvl.io.manifest import is_manifest, read_manifest
from medvl.io.slide import open_slide, slide_id_of
from medvl.log import get_logger
from medvl.pathology.tiling import TileConfig, TileGrid, make_tile_grid
from medvl.pathology.tissue import TissueConfig, detect_tissue
from medvl.provenance import PROVENANCE_KEY, Provenance, differences, input_print, parse_provenance

log = get_logger(__name__)

__all__ = ["SlideJob", "extract_slide", "features_provenance", "heatmap_slide", "resolve_slide_jobs", "run_cohort",
           "slide_info", "stored_provenance", "tile_provenance", "tile_slide", "tiling_record"]


@dataclass(frozen=True)
class SlideJob:
    """One slide to process: its id (output file stem), path, and optional mpp override."""

    slide_id: str
    path: Path
    mpp: float | None = None


def resolve_slide_jobs(source: str | Path, slide_mpp: float | None = None) -> list[SlideJob]:
    """A slide path (file or DICOM folder) or a cohort manifest -> the slides to process.

    Manifest rows of modality ``slide`` are used; a ``slide_id`` column names outputs (else the file stem) and a
    ``slide_mpp`` column overrides the mpp per slide (else ``slide_mpp``).
    """
    source = Path(source)
    if not is_manifest(source):
        if not source.exists():
            raise InputError(source, "slide not found")
        return [SlideJob(slide_id_of(source), source, slide_mpp)]
    jobs = []
    for row in read_manifest(source, modality="slide").rows:
        mpp = row.get("slide_mpp")
        jobs.append(SlideJob(str(row.get("slide_id") or slide_id_of(row.path)), row.path,
                             float(mpp) if mpp is not None else slide_mpp))
    ids = [j.slide_id for j in jobs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(source, f"several slides share the id(s) {', '.join(dup[:5])}: add a 'slide_id' column")
    if not jobs:
        raise InputError(source, "no rows of modality 'slide'")
    return jobs


# ------------------------------------------------------------------------------------------------ steps
def artefact_label(tissue: TissueConfig) -> str:
    """What the tile file records of the artefact filters (names and a hash of their settings): a tile file made
    with other filters is re-tiled, never reused."""
    from medvl.hashing import config_hash

    filters = tissue.artefacts.filters
    return "none" if not filters else f"{','.join(filters)}@{config_hash(tissue.artefacts.to_dict())[:12]}"


def slide_info(job: SlideJob) -> dict[str, Any]:
    with open_slide(job.path, mpp=job.mpp) as slide:
        return {"status": "ok", **slide.info()}


def tiling_record(tiles: TileConfig, tissue: TissueConfig, job: SlideJob,
                  regions_sha: str | None = None) -> dict[str, Any]:
    """The tiling part of a store's provenance: grid and tissue settings, the slide's mpp override and the hash of
    the annotation file that restricted the grid (when one did)."""
    record = {"tiles": tiles.to_dict(), "tissue": tissue.to_dict(), "slide_mpp": job.mpp}
    return record if regions_sha is None else {**record, "annotations": regions_sha}


def tile_provenance(job: SlideJob, tiles: TileConfig, tissue: TissueConfig,
                    regions_sha: str | None = None) -> Provenance:
    """What a tile store of ``job`` made with these settings records: the tiling and the slide's fingerprint."""
    return Provenance(tiling=tiling_record(tiles, tissue, job, regions_sha), input=input_print(job.path))


def stored_provenance(store: FeatureStore) -> Provenance | None:
    """The provenance record of an existing store (``None`` when absent, unreadable or written without one)."""
    try:
        return parse_provenance(store.attrs().get(PROVENANCE_KEY)) if store.exists() else None
    except InputError:
        return None


def stored_tiling(store: FeatureStore) -> TileConfig | None:
    """The tile settings an existing medvl store was made with (``None`` without a record)."""
    stored = stored_provenance(store)
    tiling = stored.tiling if stored is not None else None
    return TileConfig.from_dict(tiling["tiles"]) if tiling and tiling.get("tiles") else None


def tile_slide(job: SlideJob, out_dir: Path, tiles: TileConfig, tissue: TissueConfig,
               overwrite: bool = False, on_grid: Callable[..., dict[str, Any]] | None = None,
               annotations: Path | None = None) -> dict[str, Any]:
    """Detect tissue (mask PNG + GeoJSON) and write ``<out>/<slide_id>.h5`` with the tile coords and attributes.

    An existing store is kept only when its provenance records this very tiling of this very slide (content), with
    the same annotations; otherwise the slide is tiled again. ``annotations`` (a GeoJSON file, or a folder of
    ``<slide_id>.geojson``) keeps only the tiles inside their polygons (:func:`medvl.pathology.regions.restrict_grid`).
    ``on_grid(slide, mask, thumbnail, grid)``, when given, runs on the open slide after tiling (e.g. to write a DICOM
    SEG) and its record joins the slide's; the slide is then tiled again even when its tile file is current.
    """
    from medvl.pathology.regions import annotation_file, load_regions, restrict_grid

    store = FeatureStore(out_dir / f"{job.slide_id}.h5")
    geojson = None if annotations is None else annotation_file(annotations, job.slide_id)
    regions_sha = _regions_sha(annotations, job.slide_id)
    expected = tile_provenance(job, tiles, tissue, regions_sha)
    png, geo = out_dir / f"{job.slide_id}_tissue.png", out_dir / f"{job.slide_id}_tissue.geojson"
    if (not overwrite and on_grid is None and store.exists()
            and not differences(stored_provenance(store), expected, ("tiling", "input"))):
        attrs = store.attrs()
        return {"slide_id": job.slide_id, "status": "skipped", "h5": str(store.path),
                "tissue_fraction": attrs.get("slide_tissue_fraction"), "mask_png": str(png), "geojson": str(geo),
                "tiles": int(attrs.get("tiles") or 0)}
    with open_slide(job.path, mpp=job.mpp) as slide:
        slide.require_mpp()  # fail before any work when tiling by physical size is impossible
        regions = None if geojson is None else load_regions(geojson, slide.dimensions)  # refused before writing
        mask, thumb = detect_tissue(slide, tissue)
        mask.save_png(png, thumb)
        mask.save_geojson(geo)
        record = {"slide_id": job.slide_id, "tissue_fraction": round(mask.tissue_fraction, 4),
                  "mask_png": str(png), "geojson": str(geo)}
        if mask.artefacts:
            record["artefacts"] = mask.artefact_fractions()
        if mask.empty and tiles.min_tissue > 0:
            return {**record, "status": "no_tissue", "warning": f"{job.slide_id}: no tissue detected"}
        grid = make_tile_grid(slide, tiles, mask)  # min_tissue 0 keeps every tile, tissue or not
        if regions is not None:
            grid = restrict_grid(grid, regions)
            record["annotations"] = str(geojson)
        if on_grid is not None:
            record.update(on_grid(slide, mask, thumb, grid))
    if len(grid) == 0:
        return {**record, "status": "no_tiles",
                "warning": f"{job.slide_id}: no tile reaches {tiles.min_tissue:.0%} tissue at {tiles.mpp} µm/px"
                           + (" inside the annotated regions" if geojson is not None else "")}
    table = grid.to_table()
    table.attrs.update({"min_tissue": tiles.min_tissue, "tiles": len(grid),
                        "slide_tissue_fraction": record["tissue_fraction"], "artefact_filters": artefact_label(tissue),
                        PROVENANCE_KEY: expected.to_json()})
    if regions_sha is not None:
        table.attrs["annotations_sha256"] = regions_sha
    store.write(table)
    return {**record, "status": "ok", "h5": str(store.path), "tiles": len(grid), "level": grid.level,
            "patch_size_level0": grid.patch_size_level0, "mpp_source": grid.mpp_source}


def _regions_sha(annotations: Path | None, slide_id: str) -> str | None:
    from medvl.hashing import sha256_file
    from medvl.pathology.regions import annotation_file

    return None if annotations is None else sha256_file(annotation_file(annotations, slide_id))


def features_provenance(job: SlideJob, tiles: TileConfig, tissue: TissueConfig, encoder: Any,
                        regions_sha: str | None = None) -> Provenance:
    """The provenance of features made by ``encoder`` on this tiling of this slide (what reuse must match)."""
    record = tile_provenance(job, tiles, tissue, regions_sha)
    if encoder.stain_label != "none":  # a stain fit changes the tiles' pixels: part of how the tiles were made
        record = record.replace(tiling={**record.tiling, "stain": encoder.stain_label})
    return record.replace(model=encoder.model_print, preprocessing=encoder.transform.to_dict())


def extract_slide(job: SlideJob, out_dir: Path, tiles: TileConfig | None, tissue: TissueConfig, encoder,
                  config, overwrite: bool = False, annotations: Path | None = None) -> dict[str, Any]:
    """Add ``features`` to ``<out>/<slide_id>.h5`` (tiling first when the slide has no matching tile store).

    ``encoder`` is a :class:`~medvl.pathology.extract.TileEncoder` or a ``LazyTileEncoder``. ``tiles=None`` keeps
    the grid of an existing store (else the default grid); given settings that differ from the store's retile it.
    Features are reused only when their provenance (weights, preprocessing, tiling, annotations, slide) matches: a
    retrained checkpoint in the same folder, another encoder, grid or annotation file recomputes them. With
    ``annotations`` only the tiles inside the annotated regions are embedded.
    """
    from medvl.pathology.extract import extract_features

    store = FeatureStore(out_dir / f"{job.slide_id}.h5")
    tiles = tiles or stored_tiling(store) or TileConfig()
    regions_sha = _regions_sha(annotations, job.slide_id)
    stored = stored_provenance(store)
    expected = features_provenance(job, tiles, tissue, encoder, regions_sha)
    if not overwrite and store.has_features() and not differences(stored, expected):
        attrs = store.attrs()
        return {"slide_id": job.slide_id, "status": "skipped", "h5": str(store.path), "tiles": attrs.get("tiles"),
                "embed_dim": attrs.get("embed_dim"), "encoder": attrs.get("encoder")}
    record = tile_slide(job, out_dir, tiles, tissue, overwrite=overwrite, annotations=annotations)
    if record["status"] not in ("ok", "skipped"):
        return record
    table = store.read()
    grid = TileGrid.from_table(table)
    encoder = encoder.get()  # a LazyTileEncoder builds the model here, on the first slide that needs it
    with open_slide(job.path, mpp=job.mpp) as slide:
        feats = extract_features(slide, grid, encoder, config)
    attrs = {**table.attrs, "encoder": encoder.name, "embed_dim": int(encoder.embed_dim),
             "projected": bool(encoder.projected), "stain": encoder.stain_label, "medvl_version": __version__,
             PROVENANCE_KEY: features_provenance(job, tiles, tissue, encoder, regions_sha).to_json()}
    store.write(TileTable(coords=table.coords, attrs=attrs, features=feats, tissue_fraction=table.tissue_fraction))
    out = {"slide_id": job.slide_id, "status": "ok", "h5": str(store.path), "tiles": len(grid),
           "embed_dim": int(encoder.embed_dim), "encoder": encoder.name}
    if stored is not None and stored.model is not None:
        out["recomputed"] = "; ".join(differences(stored, expected))
    return out


def load_scores(path: Path, n: int, coords: np.ndarray | None = None, class_id: str | None = None) -> np.ndarray:
    """Per-tile scores from ``.npy``, a one-column (or ``score`` column) ``.csv``, or the ``.npz`` that
    ``medvl zeroshot --tile-scores`` writes (one column per class, with the tile coords it scored).

    Args:
        path: the scores file.
        n: number of tiles of the slide.
        coords: the slide's tile coords: an ``.npz`` scored on other tiles is refused, not drawn in the wrong place.
        class_id: the class column of an ``.npz`` with several classes.
    """
    if not path.is_file():
        raise InputError(path, "scores file not found")
    if path.suffix == ".npz":
        scores = _npz_scores(path, coords, class_id)
    elif path.suffix == ".npy":
        scores = np.load(path, allow_pickle=False)
    elif path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
        scores = (df["score"] if "score" in df.columns else df.iloc[:, -1]).to_numpy()
    else:
        raise InputError(path, "scores must be a .npy, .csv or .npz file")
    try:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(path, "scores must be numbers (one per tile)") from None
    if len(scores) != n:
        raise InputError(path, f"{len(scores)} scores for {n} tiles")
    return scores


def _npz_scores(path: Path, coords: np.ndarray | None, class_id: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            scores, ids = np.asarray(data["scores"]), [str(c) for c in data["class_ids"]]
            tile_coords = np.asarray(data["coords"]) if "coords" in data else None
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(path, f"not a tile-scores file of 'medvl zeroshot --tile-scores' ({reason(exc)})") from None
    if coords is not None and tile_coords is not None and len(tile_coords) and (
            tile_coords.shape != coords.shape or not np.array_equal(tile_coords, coords)):
        raise InputError(path, "the scores belong to other tiles than this slide's tile file (tile coords differ)")
    if scores.ndim == 1:
        return scores
    if class_id is None and len(ids) == 1:
        class_id = ids[0]
    if class_id not in ids:
        known = ", ".join(ids)
        raise InputError(path, f"{len(ids)} classes scored: choose one with --scores-class (classes: {known})"
                         if class_id is None else f"no class '{class_id}' (classes: {known})")
    return scores[:, ids.index(class_id)]


def heatmap_slide(job: SlideJob, features_dir: Path, out_dir: Path, scores_path: Path | None = None,
                  scores_key: str = "tissue_fraction", max_px: int = 1024,
                  scores_class: str | None = None) -> dict[str, Any]:
    """Render ``<out>/<slide_id>_heatmap.png`` from a scores file or a per-tile dataset of the slide's h5."""
    from medvl.pathology.heatmap import render_heatmap

    h5 = features_dir / f"{job.slide_id}.h5"
    table = FeatureStore(h5).read()
    if scores_path is not None:
        scores = load_scores(scores_path, len(table), table.coords, scores_class)
    else:
        scores = _dataset(h5, scores_key, len(table))
    out = out_dir / f"{job.slide_id}_heatmap.png"
    with open_slide(job.path, mpp=job.mpp) as slide:
        render_heatmap(slide, table.coords, scores, float(table.attrs.get("patch_size_level0") or 0) or 1.0,
                       out, max_px=max_px, label=scores_class or (scores_path.stem if scores_path else scores_key))
    return {"slide_id": job.slide_id, "status": "ok", "png": str(out), "tiles": len(table)}


def _dataset(h5: Path, key: str, n: int) -> np.ndarray:
    import h5py

    try:
        with h5py.File(h5, "r") as f:
            if key not in f:
                raise InputError(h5, f"no per-tile dataset '{key}' (has: {', '.join(f.keys())}); pass --scores FILE")
            values = np.asarray(f[key][()], dtype=np.float64).reshape(-1)
    except H5_ERRORS as exc:
        raise InputError(h5, f"cannot read dataset '{key}' ({reason(exc)})") from None
    if len(values) != n:
        raise InputError(h5, f"dataset '{key}' has {len(values)} values for {n} tiles")
    return values


# ------------------------------------------------------------------------------------------------ cohort
def run_cohort(
    jobs: Iterable[SlideJob],
    step: Callable[[SlideJob], dict[str, Any]],
    out_dir: Path | None = None,
    skip_errors: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``step`` over ``jobs``; returns a summary with one record per slide.

    Failures follow :class:`medvl.batch.BatchPolicy`: without ``skip_errors`` the first one is raised (one error line
    naming the slide); with it the failure is recorded and written to ``<out>/errors.json``.
    """
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(out_dir)
    policy = BatchPolicy(skip_errors)
    records = []
    for job in jobs:
        try:
            record = step(job)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a per-slide record or one clear error
            record = policy.fail(job.slide_id, exc, job.path, id_key="slide_id", path=str(job.path))
        if record.get("warning"):
            log.warning(record["warning"])
        records.append(record)
        if on_record is not None:
            on_record(record)
        gc.collect()  # slide handles and tile buffers go now, not at some later cycle: memory stays flat
    summary: dict[str, Any] = {"slides": len(records), "counts": counts(records), "records": records}
    report = write_error_report(out_dir / "errors.json", records) if out_dir is not None else None
    if report is not None:
        summary["error_report"] = str(report)
    return summary
