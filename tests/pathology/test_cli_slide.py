"""``medvl slide ...`` run as a user would: JSON output, cohorts, resume, bad input, no partial files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import assert_clean_error, run_cli


def _h5s(folder):
    return sorted(p.name for p in folder.glob("*.h5")) if folder.exists() else []


def test_info_json(svs_path):
    r = run_cli("slide", "info", svs_path, "--json")
    assert r.returncode == 0, r.stderr
    info = r.json()
    assert info["vendor"] == "aperio" and info["mpp"] == pytest.approx(0.499) and info["objective_power"] == 20


def test_tile_writes_h5_mask_and_geojson(svs_path, tmp_path):
    out = tmp_path / "tiles"
    r = run_cli("slide", "tile", svs_path, "--out", out, "--mpp", "1.0", "--size", "128", "--json")
    assert r.returncode == 0, r.stderr
    rec = r.json()["records"][0]
    assert rec["status"] == "ok" and rec["tiles"] > 10
    with h5py.File(out / "cmu-1-small-region.h5") as f:
        coords = f["coords"][()]
        assert coords.shape == (rec["tiles"], 2)
        assert f.attrs["mpp"] == 1.0 and f.attrs["tile_px"] == 128 and f.attrs["level"] == 0
        assert f.attrs["patch_size_level0"] == round(128 * 1.0 / 0.499)
        assert f.attrs["mpp_source"] == "header" and f.attrs["slide_path"].endswith("cmu-1-small-region.svs")
    geo = json.loads((out / "cmu-1-small-region_tissue.geojson").read_text())
    assert geo["features"][0]["geometry"]["type"] == "Polygon"
    assert Image.open(out / "cmu-1-small-region_tissue.png").format == "PNG"
    again = run_cli("slide", "tile", svs_path, "--out", out, "--mpp", "1.0", "--size", "128", "--json")
    assert again.json()["records"][0]["status"] == "skipped"


def test_implausible_mpp_error_then_override(levels_tiff, tmp_path):
    out = tmp_path / "o"
    r = run_cli("slide", "tile", levels_tiff, "--out", out, "--mpp", "1.0", "--size", "32")
    assert_clean_error(r, "pathml_small_HE_levels.tiff", "implausible", "--slide-mpp")
    assert _h5s(out) == []
    r = run_cli("slide", "tile", levels_tiff, "--out", out, "--mpp", "1.0", "--size", "32", "--min-tissue", "0",
                "--slide-mpp", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["records"][0]["mpp_source"] == "override"


def test_zero_tissue_is_a_warning(blank_tiff, tmp_path):
    r = run_cli("slide", "tile", blank_tiff, "--out", tmp_path / "o", "--json")
    assert r.returncode == 0
    assert r.json()["records"][0]["status"] == "no_tissue"
    assert "blank: no tissue detected" in r.stderr
    assert _h5s(tmp_path / "o") == []


@pytest.mark.parametrize("kind", ["missing", "not_a_slide", "unknown", "corrupt", "fluorescence"])
def test_bad_input_one_line_no_partial_h5(kind, tmp_path, corrupt_svs, fluorescence_tiff):
    paths = {"missing": tmp_path / "missing.svs", "not_a_slide": tmp_path / "notes.ndpi",
             "unknown": tmp_path / "scan.abc", "corrupt": corrupt_svs, "fluorescence": fluorescence_tiff}
    (tmp_path / "notes.ndpi").write_text("hello\n" * 100)
    (tmp_path / "scan.abc").write_bytes(b"\x01" * 64)
    reasons = {"missing": "not found", "not_a_slide": "not a readable slide", "unknown": "unknown slide format",
               "corrupt": "cannot read pixels", "fluorescence": "not an RGB"}
    out = tmp_path / "out"
    r = run_cli("slide", "tile", paths[kind], "--out", out)
    assert_clean_error(r, paths[kind].name, reasons[kind])
    assert _h5s(out) == [] and not list(out.glob(".*")) if out.exists() else True


def test_cohort_extract_skip_errors_resume_and_heatmap(svs_path, corrupt_svs, pyramid_tiff, tmp_path):
    manifest = tmp_path / "cohort.csv"
    pd.DataFrame({"case_id": ["b", "a", "c"], "modality": ["slide"] * 3,
                  "path": [str(corrupt_svs), str(svs_path), str(pyramid_tiff)]}).to_csv(manifest, index=False)
    out = tmp_path / "feats"
    args = ("slide", "extract", manifest, "--out", out, "--encoder", "timm-tiny", "--random-weights", "--mpp", "2.0",
            "--size", "64", "--batch-size", "16", "--device", "cpu", "--json")
    r = run_cli(*args)
    assert_clean_error(r, "corrupt.svs", "cannot read pixels")  # stops at the bad slide without --skip-errors
    r = run_cli(*args, "--skip-errors")
    assert r.returncode == 3, r.stderr
    lines = r.json_lines()
    status = {rec["slide_id"]: rec["status"] for rec in lines[:-1]}
    assert status == {"cmu-1-small-region": "ok", "corrupt": "error", "pyramid": "ok"}
    assert json.loads((out / "errors.json").read_text())[0]["slide_id"] == "corrupt"
    assert _h5s(out) == ["cmu-1-small-region.h5", "pyramid.h5"]
    from medvl.io.features import read_features

    feats, coords, attrs = read_features(out / "cmu-1-small-region.h5")
    assert feats.shape == (len(coords), 64) and attrs["encoder"] == "timm-tiny" and attrs["embed_dim"] == 64
    assert attrs["projected"] == 0 and attrs["medvl_version"]
    again = run_cli(*args, "--skip-errors")
    assert [rec["status"] for rec in again.json_lines()[:-1]] == ["error", "skipped", "skipped"]

    np.save(tmp_path / "s.npy", np.linspace(0, 1, len(coords)))
    h = run_cli("slide", "heatmap", svs_path, "--features", out, "--out", tmp_path / "hm", "--scores",
                tmp_path / "s.npy", "--max-px", "300", "--json")
    assert h.returncode == 0, h.stderr
    png = h.json()["records"][0]["png"]
    assert Image.open(png).format == "PNG"
    (tmp_path / "s.txt").write_text("0.1\n")
    bad = run_cli("slide", "heatmap", svs_path, "--features", out, "--out", tmp_path / "hm", "--scores",
                  tmp_path / "s.txt")
    assert_clean_error(bad, "s.txt", ".npy, .csv or .npz")


# ---------------------------------------------------------------------------------------- issue 16 / issue 15
def test_qptiff_info_works_and_tiling_refuses(tmp_path):
    from tests.pathology import synthetic_slides as syn

    path = syn.write_qptiff(tmp_path / "panel.qptiff")
    info = run_cli("slide", "info", path, "--json")
    assert info.returncode == 0, info.stderr
    assert info.json()["channels"] == 4 and info.json()["rgb"] is False
    assert_clean_error(run_cli("slide", "tile", path, "--out", tmp_path / "t"), "panel.qptiff", "not an RGB")


def test_single_file_dicom_wsi_through_the_cli(tmp_path):
    from tests.pathology import synthetic_slides as syn

    path = syn.write_single_file_dicom_wsi(tmp_path / "export.dcm", width=600, height=400)
    r = run_cli("slide", "info", path, "--json")
    assert r.returncode == 0, r.stderr
    assert r.json()["backend"] == "pydicom-frames" and r.json()["dimensions"] == [600, 400]


def test_tile_settings_from_a_config_file_flags_override_and_errors_name_flags(svs_path, tmp_path):
    cfg = tmp_path / "slide.yaml"
    cfg.write_text("tiles: {mpp: 2.0, size: 64, min_tissue: 0.5}\n")
    out = tmp_path / "t"
    r = run_cli("slide", "tile", svs_path, "--config", cfg, "--size", "96", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    with h5py.File(out / "cmu-1-small-region.h5") as f:
        assert f.attrs["mpp"] == 2.0 and f.attrs["tile_px"] == 96 and f.attrs["min_tissue"] == 0.5
    bad = run_cli("slide", "tile", svs_path, "--mpp", "-1", "--out", tmp_path / "x")
    assert_clean_error(bad, "--mpp")
    assert "TileConfig" not in bad.stderr
