"""App support library: uploads, rendering, CT slicing, the workspace catalogue, slide tile encodings."""

import nibabel as nib
import numpy as np
import pytest

from medvl.apps import ctview, render, slideview
from medvl.apps.catalog import pseudonym, scan_workspace
from medvl.apps.uploads import save_upload
from medvl.errors import InputError
from medvl.io.slide import open_slide


def test_upload_limits(tmp_path):
    with pytest.raises(InputError, match="the limit is 1 MB"):
        save_upload("big.svs", b"x" * 1_100_000, (".svs",), limit_mb=1, folder=tmp_path)
    with pytest.raises(InputError, match="'.exe' is not accepted"):
        save_upload("tool.exe", b"abc", (".svs",), folder=tmp_path)
    with pytest.raises(InputError, match="empty"):
        save_upload("a.svs", b"", (".svs",), folder=tmp_path)
    a = save_upload("TCGA-XX-1234.nii.gz", b"abc", (".nii.gz",), folder=tmp_path)
    b = save_upload("other.nii.gz", b"abc", (".nii.gz",), folder=tmp_path)
    assert a == b and a.name.endswith(".nii.gz") and "TCGA" not in a.name  # content-named, original name dropped


def test_window_and_overlays():
    hu = np.array([[-1000.0, 40.0, 240.0, 3000.0]])
    assert render.window(hu, 40, 400).tolist() == [[0, 128, 255, 255]]
    rgb = np.full((20, 30, 3), 200, np.uint8)
    mask = np.zeros((10, 15), bool)
    mask[:5] = True  # top half, at half resolution
    tinted = render.blend_mask(rgb, mask, (0, 255, 0), 0.5)
    assert tinted[0, 0, 1] > 200 and tinted[0, 0, 0] < 200 and (tinted[15] == 200).all()
    canvas = np.full((20, 30), np.nan)
    canvas[:, :10] = 1.0
    heat = render.blend_scores(rgb, canvas, alpha=1.0, cmap="inferno")
    assert not (heat[:, :10] == 200).all() and (heat[:, 10:] == 200).all()  # NaN stays transparent
    boxed = render.draw_box(rgb, (5, 5, 15, 10), (255, 0, 0), 1)
    assert tuple(boxed[5, 10]) == (255, 0, 0) and tuple(boxed[7, 10]) == (200, 200, 200)
    labels = np.zeros((20, 30), int)
    labels[2, 3] = 5
    coloured = render.blend_labels(rgb[..., 0], labels, 0.5)
    assert coloured.shape == (20, 30, 3) and (coloured[2, 3] != 200).any() and (coloured[0, 0] == 200).all()


def test_ct_planes_are_ras_and_spacing_correct(tmp_path):
    data = np.arange(10 * 20 * 5, dtype=np.float32).reshape(10, 20, 5)
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-0.5, -1.0, 4.0, 1.0])), path)  # LPS voxel axes
    vol = ctview.load_view_volume(path)
    assert vol.spacing == (0.5, 1.0, 4.0)
    assert np.array_equal(vol.array, data[::-1, ::-1, :])  # flipped to RAS
    # x 5 mm wide, y 20 mm, z 20 mm: axial and coronal are 4x taller than wide, sagittal square
    assert ctview.render_plane(vol, "axial", 2, 0, 1, width_px=100).shape == (400, 100, 3)
    assert ctview.render_plane(vol, "coronal", 2, 0, 1, width_px=100).shape == (400, 100, 3)
    assert ctview.render_plane(vol, "sagittal", 2, 0, 1, width_px=100).shape == (100, 100, 3)
    # radiological display: patient right (high x) on the left, anterior (high y) on top
    axial = ctview.plane_slice(vol.array, "axial", 0)
    assert axial[0, 0] == vol.array[-1, -1, 0]


def test_ct_label_map_must_match(tmp_path, ct_path):
    bad = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), bad)
    with pytest.raises(InputError, match="does not match"):
        ctview.load_view_volume(ct_path, bad)


def test_catalog_pairs_and_pseudonyms(tmp_path):
    ws = tmp_path / "ws"
    for sub in ("slides", "features", "ct", "models/m1"):
        (ws / sub).mkdir(parents=True)
    (ws / "slides" / "TCGA-AB-1234.svs").write_bytes(b"x")
    (ws / "features" / "TCGA-AB-1234.h5").write_bytes(b"x")
    (ws / "ct" / "scan.nii.gz").write_bytes(b"x")
    (ws / "ct" / "scan_labels.nii.gz").write_bytes(b"x")
    (ws / "models" / "m1" / "config.json").write_text("{}")
    (ws / "models" / "m1" / "model.safetensors").write_bytes(b"x")
    cat = scan_workspace(ws)
    assert [p.name for p in cat.cts] == ["scan.nii.gz"] and cat.labels_for(cat.cts[0]).name == "scan_labels.nii.gz"
    assert cat.features_for(cat.slides[0]).name == "TCGA-AB-1234.h5"
    assert [m.name for m in cat.models] == ["m1"] and not cat.empty
    ref = pseudonym(cat.slides[0], "slide")
    assert ref.startswith("slide-") and "TCGA" not in ref and ref == pseudonym(cat.slides[0], "slide")
    assert scan_workspace(tmp_path / "absent").empty


def test_slide_tile_encodings_are_kept_in_the_workspace_cache(tmp_path, svs_path):
    """A slide without features that fit the model is encoded once; reopening it reads the cached encodings."""
    from medvl.models import create_model, save_checkpoint
    from medvl.models.multimodal import ModelConfig, TowerSpec
    from medvl.tasks.space import JointSpace

    tiny = ModelConfig(towers={"image": TowerSpec("timm-tiny")}, embed_dim=16)
    save_checkpoint(create_model(tiny, random_weights=True), tmp_path / "ckpt")
    space = JointSpace.load(tmp_path / "ckpt", random_weights=True)
    cache = tmp_path / "ws" / "cache"
    with open_slide(svs_path) as slide:
        first = slideview.slide_tiles(slide, space, None, cache)
        grid = slideview.tile_grid_for(slide)
        direct = slideview.encode_tiles(space.model, np.stack([
            slide.read_region((int(x), int(y)), grid.level, (grid.read_px, grid.read_px)) for x, y in grid.coords]))
    assert first.source == "tiles encoded with the model's image tower"
    assert first.embeddings.shape == (len(grid), 16)
    np.testing.assert_allclose(first.embeddings, direct, atol=1e-5)  # batched reading changes nothing
    assert len(list(cache.glob("slide-tiles-*.npy"))) == 1
    with open_slide(svs_path) as slide:
        again = slideview.slide_tiles(slide, space, None, cache)
    assert again.source.endswith("(cached)")
    np.testing.assert_array_equal(again.embeddings, first.embeddings)

    (tmp_path / "other").mkdir()  # other weights: another entry, never the first model's encodings
    save_checkpoint(create_model(tiny, random_weights=True), tmp_path / "other" / "ckpt")
    with open_slide(svs_path) as slide:
        other_space = JointSpace.load(tmp_path / "other" / "ckpt", random_weights=True)
        other = slideview.slide_tiles(slide, other_space, None, cache)
    assert not other.source.endswith("(cached)") and len(list(cache.glob("slide-tiles-*.npy"))) == 2


def test_catalog_finds_dicom_series_whatever_the_suffix_and_the_outputs_of_medvl_run(tmp_path, svs_path):
    """Before: a series of suffix-less files (as PACS exports write them) and a ``medvl run`` were invisible."""
    import shutil

    import pandas as pd

    from medvl.io.features import FeatureStore, TileTable
    from medvl.pipelines.config import ModelSource, PipelineConfig
    from medvl.resources import bundled
    from tests.radiology.dicom_series import write_ct_series

    ws = tmp_path / "ws"
    series = write_ct_series(ws / "ct" / "study1", bundled("ct_small"), slices=range(3))
    for f in series.iterdir():
        f.rename(f.with_suffix(""))  # IM00001234: no suffix
    run = ws / "runs" / "cohort"
    slide = shutil.copy(svs_path, tmp_path / "slide-a.svs")
    manifest = tmp_path / "cohort.csv"
    pd.DataFrame({"case_id": ["A", "B"], "modality": ["slide", "ct"],
                  "path": [str(slide), str(bundled("ct_small"))]}).to_csv(manifest, index=False)
    PipelineConfig(manifest=manifest, model=ModelSource(name="tiny-clip")).to_file(run / "run_config.json")
    FeatureStore(run / "features" / "A.h5").write(TileTable(np.zeros((2, 2), np.int64), {"mpp": 0.5},
                                                            np.zeros((2, 4), np.float32)))
    (run / "index" / "slides").mkdir(parents=True)
    (run / "index" / "slides" / "index.json").write_text("{}")
    cat = scan_workspace(ws)
    assert series in cat.cts and bundled("ct_small") in cat.cts
    assert cat.slides == [slide] and cat.features_for(slide) == run / "features" / "A.h5"
    assert cat.indexes == [run / "index" / "slides"]
