"""``slide`` rows of the ``manifest`` dataset on the bundled slide: tiles at the grid of its ``medvl slide tile``
store (readers kept open, bounded tiles per slide), and feature bags from a features ``.h5``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medvl.errors import InputError
from medvl.train.data import build_dataset
from tests.train.cohort import write_manifest

REPORTS = [  # report, label, split
    ("invasive ductal carcinoma of the breast", "malignant", "train"),
    ("breast fibroadenoma", "benign", "train"),
    ("benign breast tissue with no carcinoma", "benign", "train"),
    ("invasive ductal carcinoma of the breast", "malignant", "train"),
    ("lobular carcinoma of the breast", "malignant", "test"),
    ("breast fibroadenoma", "benign", "test"),
]


@pytest.fixture(scope="module")
def slide_cohort(tmp_path_factory) -> Path:
    """The bundled slide tiled by the library behind ``medvl slide tile`` (2 µm/px, 32 px), read as six cases."""
    from medvl.io.features import FeatureStore
    from medvl.pathology.pipeline import SlideJob, tile_slide
    from medvl.pathology.tiling import TileConfig
    from medvl.pathology.tissue import TissueConfig
    from medvl.resources import bundled

    folder = tmp_path_factory.mktemp("slides")
    svs = Path(bundled("slide"))
    result = tile_slide(SlideJob("cmu1", svs), folder / "tiles", TileConfig(mpp=2.0, size=32), TissueConfig())
    assert result["status"] == "ok" and result["tiles"] > 16
    # tile features of the same grid (mean and std of each channel of the real tiles): a features .h5 per slide
    from medvl.io.slide import open_slide
    from medvl.pathology.loader import TileReader
    from medvl.pathology.tiling import TileGrid

    table = FeatureStore(folder / "tiles" / "cmu1.h5").read()
    with open_slide(svs) as slide:
        tiles = TileReader(slide, TileGrid.from_table(table)).read_many(0, len(table)).astype(np.float32) / 255
    table.features = np.concatenate([tiles.mean((1, 2)), tiles.std((1, 2))], axis=1)
    FeatureStore(folder / "features.h5").write(table)
    table.features = table.features[:, :4]
    FeatureStore(folder / "narrow.h5").write(table)
    rows = [{"case_id": f"s{i}", "modality": "slide", "path": str(svs), "tiles": "tiles/cmu1.h5",
             "features": "features.h5", "report": rep, "labels": lab, "split": split}
            for i, (rep, lab, split) in enumerate(REPORTS)]
    return write_manifest(folder / "manifest.csv", rows)


def _tiles(manifest: Path, **options):
    return build_dataset("manifest", {"manifest": str(manifest), "modality": "slide", "tiles_per_slide": 4,
                                      "image": {"size": 32}, **options})


def test_slide_tiles_come_from_the_tile_stores_grid_and_readers_stay_open(slide_cohort):
    from medvl.io.features import FeatureStore
    from medvl.io.slide import open_slide
    from medvl.models.transforms import ImageTransformConfig, image_transform
    from medvl.pathology.loader import TileReader
    from medvl.pathology.tiling import TileGrid

    ds = _tiles(slide_cohort, augment=False)
    counts = ds.counts()
    assert counts["rows"] == 4 and counts["items"] == 16  # 4 tiles per slide per epoch
    grid = TileGrid.from_table(FeatureStore(slide_cohort.parent / "tiles" / "cmu1.h5").read())
    with open_slide(grid.slide_path) as slide:
        direct = TileReader(slide, grid).read(2 * len(grid) // 4)  # evaluation reads evenly spaced tiles
    expected = image_transform(direct[None], ImageTransformConfig(size=32))[0]
    assert torch.equal(ds.item(2, None)["image"], expected)
    trained = _tiles(slide_cohort)
    drawn = {tuple(trained.item(k, torch.Generator().manual_seed(k))["image"][0, 0, :4].tolist()) for k in range(8)}
    assert len(drawn) > 1  # training draws tiles with the item's seeded generator
    assert len(trained.source.reader._open) == 1  # one handle for the one slide file, kept across items
    assert ds.domains["image"].label() == "slide, H&E, rgb"
    # a tile's group is its slide's report's concept; every tile of one slide shares it
    assert len({ds.group_ids[k] for k in range(4)}) == 1


def test_a_missing_tile_store_names_row_and_column(slide_cohort, tmp_path):
    import csv

    rows = list(csv.DictReader(open(slide_cohort, encoding="utf-8")))
    for r in rows:
        r["path"], r["tiles"] = r["path"], str(slide_cohort.parent / r["tiles"])
    rows[1]["tiles"] = str(tmp_path / "gone.h5")
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(InputError, match=r"row 2, column 'tiles': 'gone.h5' not found \(run: medvl slide tile\)"):
        _tiles(manifest)


def test_feature_bags_have_the_towers_dimension(slide_cohort, tmp_path):
    import csv

    ds = build_dataset("manifest", {"manifest": str(slide_cohort), "modality": "slide", "reader": "slide-features",
                                    "bag_size": 8})
    bag = ds.item(0, torch.Generator().manual_seed(0))["bag"]
    assert ds.fields == {"bag": "bag", "text": "text"} and bag.shape == (8, 6) and len(ds) == 4
    rows = list(csv.DictReader(open(slide_cohort, encoding="utf-8")))
    for r in rows:
        r["tiles"], r["features"] = "", str(slide_cohort.parent / r["features"])
    rows[2]["features"] = str(slide_cohort.parent / "narrow.h5")
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(InputError, match=r"row 3, column 'features': 4-d features, the bag tower takes 6"):
        build_dataset("manifest", {"manifest": str(manifest), "modality": "slide", "reader": "slide-features",
                                   "feature_dim": 6})


def _tiny_slides(data: dict) -> None:
    data["model_config"] = {"towers": {"image": {"name": "timm-tiny"}, "text": {"name": "hf-text-tiny"}},
                            "embed_dim": 16}
    data["data"]["options"].update(tiles_per_slide=4, image={"size": 32})
    data["data"]["batch_size"], data["data"]["groups_per_batch"] = 8, 2
    stage = data["stages"][0]
    stage.update(steps=2, eval_every=0, warmup_steps=0)
    data["checkpoint_every"] = 2


def test_own_slides_example_trains_on_tiles_with_their_reports(slide_cohort):
    from tests.train.test_manifest_data import _tiny, _train

    config = _tiny("own-slides.yaml", slide_cohort.parent, _tiny_slides)
    run = slide_cohort.parent / "run"
    summary = _train(config, run)
    after = summary["evaluations"]["keep"]["heldout"]["after"]
    assert after["items"] == 8 and {"recall@1", "recall@5", "auc", "balanced_accuracy"} <= set(after)
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["domains"]["image"] == {"modality": "slide", "channels": "rgb", "stain": "H&E"}
    assert meta["preprocessing"]["image"]["size"] == 32
