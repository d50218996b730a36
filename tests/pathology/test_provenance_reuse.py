"""Issue 16 items 1-3 and issue 15 for slides: reuse and consumers go by content, and one transform serves all paths.

Each test first reproduces the wrong result the issue reported (a skip, an ignored option, an accepted encoder, a
silent random initialisation) and asserts that medvl now recomputes, refuses or asks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medvl.errors import ConfigError, InputError
from medvl.io.embeddings import load_embeddings
from medvl.io.features import FeatureStore
from medvl.log import collected_warnings
from medvl.pathology.extract import EncoderSpec, ExtractConfig, LazyTileEncoder
from medvl.pathology.pipeline import SlideJob, extract_slide, tile_slide
from medvl.pathology.tiling import TileConfig, TileGrid
from medvl.pathology.tissue import TissueConfig
from medvl.provenance import PROVENANCE_KEY, parse_provenance
from tests.conftest import assert_clean_error, run_cli

GRID = TileConfig(mpp=1.0, size=64, min_tissue=0)
RUN = ExtractConfig(batch_size=8, workers=1, device="cpu")


def _checkpoint(folder: Path, seed: int) -> Path:
    """A tiny image/text checkpoint (random weights drawn with ``seed``), saved as training saves one."""
    from medvl.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(create_model("tiny-clip", random_weights=True), folder)


def _encoder(name: str | Path, **options) -> LazyTileEncoder:
    return LazyTileEncoder(EncoderSpec(name=str(name), random_weights=True, **options))


def _extract(pyramid_tiff: Path, out: Path, encoder, tiles: TileConfig | None = GRID) -> dict:
    return extract_slide(SlideJob("slide", pyramid_tiff), out, tiles, TissueConfig(), encoder, RUN)


def _space(ckpt: Path, **options):
    from medvl.tasks.space import JointSpace

    return JointSpace.load(ckpt, random_weights=True, **options)


@pytest.fixture(scope="module")
def ckpt_a(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("a") / "ckpt", seed=0)


@pytest.fixture(scope="module")
def ckpt_b(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("b") / "ckpt", seed=1)


# ------------------------------------------------------------------------------------------------ item 1
def test_a_checkpoint_retrained_into_the_same_folder_is_extracted_again(tmp_path, pyramid_tiff):
    ckpt, out = tmp_path / "ckpt", tmp_path / "features"
    _checkpoint(ckpt, seed=0)
    first = _extract(pyramid_tiff, out, _encoder(ckpt))
    before = load_embeddings(out / "slide.h5").embeddings
    assert first["status"] == "ok" and _extract(pyramid_tiff, out, _encoder(ckpt))["status"] == "skipped"
    _checkpoint(ckpt, seed=1)  # retrained: the same folder and name, other weights (issue 16: "skipped")
    again = _extract(pyramid_tiff, out, _encoder(ckpt))
    assert again["status"] == "ok" and "the weights differ" in again["recomputed"]
    after = load_embeddings(out / "slide.h5").embeddings
    fresh = _extract(pyramid_tiff, tmp_path / "fresh", _encoder(ckpt))
    assert fresh["status"] == "ok" and not np.allclose(after, before)
    np.testing.assert_array_equal(after, load_embeddings(tmp_path / "fresh" / "slide.h5").embeddings)


def test_an_explicit_grid_retiles_an_existing_store_and_no_grid_keeps_it(tmp_path, pyramid_tiff):
    out = tmp_path / "features"
    tile_slide(SlideJob("slide", pyramid_tiff), out, GRID, TissueConfig())
    kept = _extract(pyramid_tiff, out, _encoder("timm-tiny"), tiles=None)  # no tiling options: the store's grid
    assert kept["tiles"] == 48 and FeatureStore(out / "slide.h5").attrs()["mpp"] == 1.0
    other = TileConfig(mpp=2.0, size=64, min_tissue=0)  # issue 16: "silently ignored"
    assert _extract(pyramid_tiff, out, _encoder("timm-tiny"), tiles=other)["tiles"] == 12
    attrs = FeatureStore(out / "slide.h5").attrs()
    assert (attrs["mpp"], attrs["tile_px"]) == (2.0, 64)
    assert parse_provenance(attrs[PROVENANCE_KEY]).tiling["tiles"] == other.to_dict()


def test_cli_extract_with_explicit_mpp_and_size_retiles(tmp_path, svs_path):
    out, h5 = tmp_path / "features", tmp_path / "features" / f"{svs_path.stem}.h5"
    tile_slide(SlideJob(svs_path.stem, svs_path), out, TileConfig(), TissueConfig())  # 0.5 µm/px, 224 px
    assert FeatureStore(h5).attrs()["mpp"] == 0.5
    r = run_cli("slide", "extract", svs_path, "--out", out, "--encoder", "timm-tiny", "--random-weights", "--mpp", "2",
                "--size", "224", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    attrs = FeatureStore(h5).attrs()
    assert (attrs["mpp"], attrs["tile_px"]) == (2.0, 224) and r.json()["records"][0]["tiles"] == attrs["tiles"] > 0


# ------------------------------------------------------------------------------------------------ item 2
def test_features_of_another_encoder_are_refused_though_name_and_width_match(tmp_path, pyramid_tiff, ckpt_a):
    """The bare ``timm-tiny`` tower and the checkpoint's image tower share a name and a width, not weights."""
    _extract(pyramid_tiff, tmp_path, _encoder("timm-tiny"))
    space = _space(ckpt_a)
    assert space.model.config.towers["image"].name == "timm-tiny"
    with pytest.raises(InputError, match="made by 'timm-tiny' .*not by 'ckpt' .*the weights differ"):
        space.to_joint(load_embeddings(tmp_path / "slide.h5"), "image", origin=tmp_path / "slide.h5")


def test_an_index_never_mixes_two_encoders(tmp_path, pyramid_tiff, ckpt_a, ckpt_b):
    from medvl.tasks.retrieval.build import build_index

    a, b = tmp_path / "a", tmp_path / "b"
    _extract(pyramid_tiff, a, _encoder(ckpt_a))
    _extract(pyramid_tiff, b, _encoder(ckpt_b))
    with pytest.raises(InputError, match="b/slide.h5: does not match: .*weights differ .*one index holds one"):
        build_index([a / "slide.h5", b / "slide.h5"], tmp_path / "raw")
    with pytest.raises(InputError, match="b/slide.h5: does not match"):
        build_index([a / "slide.h5", b / "slide.h5"], tmp_path / "joint", model=ckpt_a, random_weights=True)
    rec = build_index([a / "slide.h5"], tmp_path / "joint", model=ckpt_a, random_weights=True, level="tile")
    assert rec["count"] == 48 and rec["provenance"]["model"]["random_weights"] is True


def test_projected_features_feed_zeroshot_and_the_index(tmp_path, pyramid_tiff, ckpt_a):
    """Issue 15: features written with --project were refused by the model that projected them."""
    from medvl.tasks.retrieval.build import build_index

    _extract(pyramid_tiff, tmp_path, _encoder(ckpt_a, project=True))
    emb = load_embeddings(tmp_path / "slide.h5")
    assert emb.projected and emb.provenance.model.projected
    joint = _space(ckpt_a).to_joint(emb, "image")
    np.testing.assert_allclose(joint, emb.embeddings, atol=1e-6)  # kept as they are, not projected again
    assert build_index([tmp_path / "slide.h5"], tmp_path / "idx", model=ckpt_a, random_weights=True)["count"] == 1


def test_features_without_a_record_are_refused_unless_trusted(tmp_path, pyramid_tiff, ckpt_a):
    from medvl.io.features import TileTable

    _extract(pyramid_tiff, tmp_path, _encoder(ckpt_a))
    table = FeatureStore(tmp_path / "slide.h5").read()
    legacy = tmp_path / "legacy.h5"  # what an older medvl (or CLAM/TRIDENT) wrote: no provenance
    FeatureStore(legacy).write(TileTable(table.coords, {k: v for k, v in table.attrs.items() if k != PROVENANCE_KEY},
                                         table.features))
    with pytest.raises(InputError, match="legacy.h5: carries no provenance record.*slide extract --encoder.*"
                                         "--trust-provenance"):
        _space(ckpt_a).to_joint(load_embeddings(legacy), "image")
    trusting = _space(ckpt_a, trust_provenance=True)
    assert trusting.to_joint(load_embeddings(legacy), "image").shape == (48, 32)
    assert "without a provenance record used" in trusting.provenance()["trusted"][0]
    assert "legacy.h5" in collected_warnings()[0] and "legacy" not in trusting.provenance()["trusted"][0]


# ------------------------------------------------------------------------------------------------ item 3
def test_an_encoder_without_weights_needs_random_weights(tmp_path, svs_path):
    with pytest.raises(ConfigError, match="encoder 'timm:resnet10t' has no weights.*--random-weights"):
        LazyTileEncoder(EncoderSpec(name="timm", model_name="resnet10t"))
    printed = LazyTileEncoder(EncoderSpec(name="timm", model_name="resnet10t", random_weights=True)).model_print
    assert printed.random_weights and printed.weights == "random:seed=0"
    r = run_cli("slide", "extract", svs_path, "--out", tmp_path, "--encoder", "timm", "--model-name", "resnet10t")
    assert_clean_error(r, "has no weights", "--random-weights")


# ------------------------------------------------------------------------------------------------ issue 15
def test_same_tiles_same_vectors_through_extract_the_slide_viewer_and_image_files(tmp_path, pyramid_tiff, ckpt_a):
    """One transform: ``medvl slide extract``, the slide viewer's ``encode_tiles`` and image files feed the model the
    very same tensor for the same pixels (the viewer's vectors used to differ by up to 0.042)."""
    from PIL import Image

    from medvl.apps.slideview import encode_tiles
    from medvl.models.transforms import image_transform
    from medvl.pathology.loader import iter_tile_batches
    from medvl.tasks.vectors import l2_normalise

    out = tmp_path / "features"
    r = run_cli("slide", "extract", pyramid_tiff, "--out", out, "--encoder", ckpt_a, "--project", "--random-weights",
                "--mpp", "1", "--size", "64", "--min-tissue", "0", "--batch-size", "8", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    h5 = out / f"{pyramid_tiff.stem}.h5"
    space = _space(ckpt_a)
    extracted = space.to_joint(load_embeddings(h5), "image")[:8]
    grid = TileGrid.from_table(FeatureStore(h5).read())
    tiles = next(iter(iter_tile_batches(pyramid_tiff, grid, batch_size=8, workers=0)))[1]
    viewer = encode_tiles(space.model, tiles)
    np.testing.assert_array_equal(viewer, extracted)
    files = []
    for i, tile in enumerate(tiles):
        Image.fromarray(tile).save(tmp_path / f"tile{i}.png")
        files.append(tmp_path / f"tile{i}.png")
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    transform = space.model.image_transform()
    assert torch.equal(image_transform(pixels, transform), image_transform(tiles, transform))  # bit for bit
    from_files = l2_normalise(np.concatenate([space.encode_image_file(f) for f in files]))
    np.testing.assert_allclose(from_files, extracted, atol=1e-6, rtol=0)  # one image per forward: float sums only

    zs = run_cli("zeroshot", h5, "--model", ckpt_a, "--classes", "tumour,normal tissue",
                 "--random-weights", "--json")
    assert zs.returncode == 0, zs.stderr  # projected features of this very checkpoint (issue 15: refused)
    assert zs.json()["provenance"]["vectors"]["model"]["projected"] is True
