"""QuPath round trip on the bundled Aperio slide: annotations restrict tiling and score a heatmap; tile scores go
out as QuPath detections. Bad GeoJSON (another coordinate frame, invalid geometry) is refused with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvl.io.features import FeatureStore
from tests.conftest import assert_clean_error, run_cli

pytest.importorskip("shapely")
TUMOUR = (400.0, 700.0, 1500.0, 2100.0)  # x0, y0, x1, y1 in level-0 pixels
STROMA = (1600.0, 200.0, 2100.0, 600.0)


def _feature(box, cls, i):
    x0, y0, x1, y1 = box
    return {"type": "Feature", "id": f"00000000-0000-4000-8000-00000000000{i}",
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "properties": {"objectType": "annotation", "classification": {"name": cls, "color": [200, 0, 0]}}}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture(scope="module")
def tiled(svs_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    geo = _write(root / "ann.geojson", [_feature(TUMOUR, "Tumor", 1), _feature(STROMA, "Stroma", 2)])
    full = run_cli("slide", "tile", svs_path, "--out", root / "all", "--min-tissue", "0", "--json")
    inside = run_cli("slide", "tile", svs_path, "--out", root / "in", "--min-tissue", "0", "--annotations", geo,
                     "--json")
    assert full.returncode == 0 and inside.returncode == 0, full.stderr + inside.stderr
    return root, geo


def _share(coords, size, box):
    x0, y0, x1, y1 = box
    w = np.clip(np.minimum(coords[:, 0] + size, x1) - np.maximum(coords[:, 0], x0), 0, None)
    h = np.clip(np.minimum(coords[:, 1] + size, y1) - np.maximum(coords[:, 1], y0), 0, None)
    return w * h / size ** 2


def test_tiling_keeps_the_tiles_inside_the_annotations(tiled):
    root, _ = tiled
    every = FeatureStore(root / "all" / "cmu-1-small-region.h5").read()
    kept = FeatureStore(root / "in" / "cmu-1-small-region.h5").read()
    size = float(every.attrs["patch_size_level0"])
    share = _share(every.coords, size, TUMOUR) + _share(every.coords, size, STROMA)  # the boxes do not overlap
    expected = every.coords[share >= 0.5]
    assert 0 < len(kept) < len(every)
    assert {tuple(c) for c in kept.coords} == {tuple(c) for c in expected}
    assert kept.attrs["annotations_sha256"]


def _scores(root, hot):
    table = FeatureStore(root / "all" / "cmu-1-small-region.h5").read()
    size = float(table.attrs["patch_size_level0"])
    centre = table.coords + size / 2
    x0, y0, x1, y1 = hot
    inside = (centre[:, 0] > x0) & (centre[:, 0] < x1) & (centre[:, 1] > y0) & (centre[:, 1] < y1)
    p = np.where(inside, 0.9, 0.1)
    path = root / "scores.npz"
    np.savez(path, scores=np.stack([p, 1 - p], axis=1).astype(np.float32), class_ids=np.array(["DOID:3459", "normal"]),
             class_names=np.array(["breast carcinoma", "normal tissue"]), coords=table.coords,
             patch_size_level0=size)
    return path, table, inside


def test_evaluate_gives_dice_and_auc_per_region(tiled):
    root, geo = tiled
    scores, _, inside = _scores(root, TUMOUR)
    r = run_cli("slide", "evaluate", _slide(), "--tile-scores", scores,
                "--annotations", geo, "--class", "DOID:3459", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["region"]: row for row in r.json()["regions"]}
    assert rows["Tumor"]["dice"] == pytest.approx(1.0) and rows["Tumor"]["auc"] == pytest.approx(1.0)
    assert rows["Tumor"]["tiles_inside"] == int(inside.sum())
    assert rows["Stroma"]["dice"] == pytest.approx(0.0) and rows["Stroma"]["auc"] < 0.5
    assert rows["all regions"]["tiles_inside"] == rows["Tumor"]["tiles_inside"] + rows["Stroma"]["tiles_inside"]


def _slide():
    from medvl.resources import bundled

    return bundled("slide")


def test_qupath_detections_carry_class_and_measurements(tiled, tmp_path):
    root, _ = tiled
    scores, table, inside = _scores(root, TUMOUR)
    out = tmp_path / "detections.geojson"
    r = run_cli("slide", "qupath", _slide(), "--tile-scores", scores, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(table)
    size = float(table.attrs["patch_size_level0"])
    for feature, (x, y), hit in zip(data["features"], table.coords, inside, strict=True):
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == ("breast carcinoma" if hit else "normal tissue")
        assert len(props["classification"]["color"]) == 3
        assert props["measurements"]["breast carcinoma probability"] == pytest.approx(0.9 if hit else 0.1)
        ring = feature["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] == [x, y] and ring[2] == [pytest.approx(x + size), pytest.approx(y + size)]
        assert len(feature["id"]) == 36


def test_geojson_in_another_frame_is_refused_with_nothing_written(tmp_path):
    micrometres = _write(tmp_path / "um.geojson", [_feature((5000, 6000, 9000, 9000), "Tumor", 1)])
    out = tmp_path / "tiles"
    assert_clean_error(run_cli("slide", "tile", _slide(), "--out", out, "--annotations", micrometres),
                       "another coordinate frame", "um.geojson")
    assert not out.exists() or not any(out.iterdir())


def test_invalid_geometry_is_refused_with_nothing_written(tmp_path):
    bowtie = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[100, 100], [900, 900], [900, 100], [100, 900], [100, 100]]]}, "properties": {}}
    geo = _write(tmp_path / "bowtie.geojson", [bowtie])
    out = tmp_path / "tiles"
    assert_clean_error(run_cli("slide", "tile", _slide(), "--out", out, "--annotations", geo),
                       "invalid polygon", "self-intersection")
    assert not out.exists() or not any(out.iterdir())
