"""What the viewers draw: overlay data, annotations, file paths inside the roots, CT gaps and the model-input box."""

import base64
import json
from io import BytesIO

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medvl.apps import annotations, ctcrop, ctgaps, ctview, viewerdata
from medvl.apps.roots import OutsideRootsError, resolve_file_in_roots
from medvl.errors import InputError
from tests.radiology.dicom_series import write_ct_series


def test_tissue_overlay_and_tile_layer():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    png = viewerdata.tissue_png(mask)
    rgba = np.asarray(Image.open(BytesIO(base64.b64decode(png.split(",", 1)[1]))))
    assert rgba.shape == (4, 6, 4) and (rgba[..., 3] > 0).tolist() == mask.tolist()
    coords = np.array([[0, 0], [224, 0], [0, 224]])
    layer = viewerdata.TileLayer(coords, 224.0, np.array([0.1, 0.9, 0.5]), 0.1, 0.9, opacity=2.0, boundaries=True)
    payload = layer.payload()
    assert payload["colors"][0] != payload["colors"][1] and payload["opacity"] == 1.0
    assert payload["colors"][1] == viewerdata.heat_legend("p", 0.1, 0.9)["stops"][-1]  # top of the colour bar
    assert viewerdata.TileLayer(coords, 224.0).payload() is None  # nothing to draw
    assert viewerdata.tile_at(coords, 224.0, 230, 10) == 1 and viewerdata.tile_at(coords, 224.0, 300, 300) is None
    args = viewerdata.viewer_args(tile_url="http://127.0.0.1:1", token="t", path="/x.svs", dimensions=(500, 400),
                                  mpp=None, tiles=layer, selected=(0, 0, 224, 224))
    assert json.loads(json.dumps(args))["tiles"]["coords"][1] == [224.0, 0.0] and args["mpp"] is None


def test_annotations_qupath_geojson(tmp_path):
    qupath = {"type": "FeatureCollection", "features": [
        {"type": "Feature",
         "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [200, 10], [200, 90], [10, 10]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[[[300, 300], [310, 300], [310, 310]]],
                                                                                  [[[0, 0], [5, 0], [5, 5]]]]},
         "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [50, 60]}, "properties": {}},
    ]}
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(qupath))
    shapes = annotations.shapes_for_viewer(annotations.load_geojson(path), (1000, 800))
    assert shapes[0]["color"] == "#c80000" and shapes[0]["closed"] and len(shapes[0]["rings"][0]) == 4
    assert len(shapes[1]["rings"]) == 2 and shapes[2]["points"] == [[50.0, 60.0]]


@pytest.mark.parametrize("content, problem", [
    (b"{not json", "not a readable GeoJSON"),
    (b'{"type": "FeatureCollection"}', "'features' list"),
    (b'{"type": "Polygon", "coordinates": [[[0, 0], ["a", 1]]]}', "not a pair of finite numbers"),
    (b'{"type": "Polygon", "coordinates": [[[0, 0], [NaN, 1]]]}', "not a pair of finite numbers"),
    (b'{"type": "Circle", "coordinates": [1, 2]}', "unknown geometry type"),
    (b'{"type": "Polygon", "coordinates": [[[5000, 5000], [6000, 5000], [6000, 6000]]]}', "another coordinate frame"),
    (b'{"type": "Polygon", "coordinates": [[[100, 100], [900, 700], [900, 100], [100, 700], [100, 100]]]}',
     "invalid Polygon .*Self-intersection"),
])
def test_bad_annotations_are_refused(content, problem):
    with pytest.raises(InputError, match=problem) as exc:
        annotations.shapes_for_viewer(annotations.load_geojson(content, "up.geojson"), (1000, 800), "up.geojson")
    assert str(exc.value).startswith("up.geojson")


def test_file_paths_must_lie_inside_the_roots(tmp_path):
    root = tmp_path / "root"
    (root / "ws" / "slides").mkdir(parents=True)
    slide = root / "ws" / "slides" / "a.svs"
    slide.write_bytes(b"x")
    (tmp_path / "out.svs").write_bytes(b"x")
    (root / "ws" / "out.svs").symlink_to(tmp_path / "out.svs")
    assert resolve_file_in_roots(str(slide), [root.resolve()]) == slide.resolve()
    assert resolve_file_in_roots("ws/slides/a.svs", [root.resolve()]) == slide.resolve()
    for bad in (tmp_path / "out.svs", "ws/../../out.svs", root / "ws" / "out.svs"):
        with pytest.raises(OutsideRootsError):
            resolve_file_in_roots(str(bad), [root.resolve()])
    with pytest.raises(InputError, match="no such file") as exc:
        resolve_file_in_roots("ws/slides/b.svs", [root.resolve()])
    assert not isinstance(exc.value, OutsideRootsError)


def test_missing_slices_are_shown_at_their_positions(tmp_path, ct_path):
    """A series without slices 10, 11 and 20: the view has every other slice where the full scan has it, and empty
    slices (a violet band in every plane) at the missing positions."""
    full = ctview.load_view_volume(ct_path)
    gappy = ctview.load_view_volume(write_ct_series(tmp_path / "gap", ct_path, drop=(10, 11, 20)))
    assert gappy.shape == full.shape and gappy.missing == ((), (), (10, 11, 20))
    assert any(w.startswith("missing slices: 3 slice(s)") for w in gappy.warnings)
    keep = [k for k in range(full.shape[2]) if k not in (10, 11, 20)]
    np.testing.assert_allclose(gappy.array[:, :, keep], full.array[:, :, keep], atol=0.5)  # stored as 0.5 HU steps
    assert np.isnan(gappy.array[:, :, [10, 11, 20]]).all()
    coronal = ctview.render_plane(gappy, "coronal", 50, 40, 400, width_px=gappy.shape[0])  # 1 px per voxel
    rows = coronal.shape[0] - 1 - np.array([10, 11, 20])  # superior at the top
    assert (coronal[rows] == ctview.GAP_RGB).all() and not (coronal[rows - 2] == ctview.GAP_RGB).all(axis=-1).any()
    assert ctview.is_missing(gappy, "axial", 11) and not ctview.is_missing(gappy, "axial", 12)
    assert (ctview.render_plane(gappy, "axial", 11, 40, 400) == ctview.GAP_RGB).all()
    assert ctgaps.gaps_from_depths(np.array([0.0, 3.0, 6.0])) is None  # regular: nothing to fill
    assert ctgaps.gaps_from_depths(np.array([0.0, 3.0, 7.1])) is None  # irregular: cannot be placed on a grid


def test_model_input_box_in_place(tmp_path):
    """The box of a preprocessing grid in viewer voxels, and its cross-section in each displayed plane."""
    data = np.zeros((40, 30, 20), np.float32)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 4.0, 1.0])), path)
    vol = ctview.load_view_volume(path)
    grid = np.diag([1.0, 1.0, 2.0, 1.0])
    grid[:3, 3] = [20.0, 10.0, 8.0]  # a 1x1x2 mm grid starting at (20, 10, 8) mm
    bounds = ctcrop.crop_bounds(grid, (20, 10, 10), vol.affine)
    assert np.allclose(bounds, [(10.25, 20.25), (5.25, 10.25), (2.25, 7.25)])  # voxel edges: 19.5..39.5 mm in x
    assert ctcrop.plane_rect(bounds, vol.shape, "axial", 10) is None  # above the box
    c0, r0, c1, r1 = ctcrop.plane_rect(bounds, vol.shape, "axial", 4)
    assert (c0, c1) == (40 - 20.25, 40 - 10.25) and (r0, r1) == (30 - 10.25, 30 - 5.25)  # radiological orientation
    img = ctview.render_plane(vol, "axial", 4, 40, 400, width_px=40, box=(c0, r0, c1, r1))
    mid = round((r0 + r1) / 2)
    assert tuple(img[mid, round(c0)]) == ctview.CROP_RGB and tuple(img[mid, round(c0) + 3]) != ctview.CROP_RGB


def test_model_input_comes_from_the_cache_or_the_chain(tmp_path, ct_path):
    from medvl.io.volume import load_volume
    from medvl.radiology.cache import VolumeCache
    from medvl.radiology.preprocess import CTCase, preprocess_case
    from medvl.radiology.transforms import CTPreprocessConfig

    cfg = CTPreprocessConfig(spacing=(6.0, 6.0, 6.0), spatial_size=(32, 32, 16))
    vol = ctview.load_view_volume(ct_path)
    computed = ctcrop.model_input(ct_path, None, tmp_path / "volumes" / "x", cfg, vol.affine)
    assert not computed.cached and computed.shape == (32, 32, 16) and computed.spacing == (6.0, 6.0, 6.0)
    preprocess_case(CTCase(ct_path, "c1"), cfg, VolumeCache(tmp_path / "volumes", cfg))
    (folder, found), = ctcrop.find_preprocessings(tmp_path / "volumes")
    assert found == cfg and "32×32×16 voxels, at 6×6×6 mm" in ctcrop.describe(cfg)
    cached = ctcrop.model_input(ct_path, None, folder, found, vol.affine)
    assert cached.cached and np.allclose(cached.bounds, computed.bounds)
    # the grid is centred on the body (foreground crop) and 192 x 192 x 96 mm: 64 x 64 x 32 voxels of 3 mm
    assert np.allclose([hi - lo for lo, hi in cached.bounds], [64, 64, 32])
    assert load_volume(ct_path).spacing == (3.0, 3.0, 3.0)
