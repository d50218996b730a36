"""``medvl ct`` as a user runs it: info, preprocess, embed, PHI never leaking, and bad inputs."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pydicom

from medvl.radiology.embed import read_embeddings
from tests.conftest import assert_clean_error, run_cli
from tests.radiology.dicom_series import PHI, write_ct_series


def _files_containing(root, needles):
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if f.suffix == ".npz":  # members may be compressed by a later writer: look inside too
                with np.load(f, allow_pickle=False) as z:
                    data += b"".join(str(z[k]).encode() for k in z.files if z[k].dtype.kind in "US")
            hits += [(f, n) for n in needles if n.encode() in data]
    return hits


def test_phi_never_leaves_medvl(tmp_path, dicom_series):
    ws = tmp_path / "ws"
    info = run_cli("ct", "info", dicom_series, "--json", "-vv")
    assert info.returncode == 0, info.stderr
    rec = info.json()
    assert rec["modality"] == "CT" and rec["shape"] == [122, 101, 30] and rec["spacing_mm"] == [3.0, 3.0, 3.0]
    human = run_cli("ct", "info", dicom_series, "-vv")
    prep = run_cli("ct", "preprocess", dicom_series, "-vv", "--workspace", ws, "--size", "64,64,16")
    prep_json = run_cli("ct", "preprocess", dicom_series, "--json", "--workspace", ws, "--size", "64,64,16")
    assert prep.returncode == 0 and prep_json.returncode == 0, prep.stderr
    assert "DEBUG" in prep.stderr  # -vv really logged
    assert prep_json.json()["cached"] == 1  # the second pass read the cache
    needles = [v for v in PHI.values()] + [PHI["PatientName"].split("^")[0]]
    for res in (info, human, prep, prep_json):
        for needle in needles:
            assert needle not in res.stdout and needle not in res.stderr, needle
    assert list((ws / "volumes").rglob("*.npz"))
    assert _files_containing(ws, needles) == []
    raw_uid = pydicom.dcmread(next(dicom_series.iterdir())).SeriesInstanceUID
    assert raw_uid not in info.stdout and rec["series_found"][0]["series_uid"].startswith("2.25.")


def test_embed_writes_case_ids_and_config(tmp_path, ct_small, ct_labels):
    out = tmp_path / "emb.h5"
    manifest = tmp_path / "cases.csv"
    # the cohort manifest's columns: 'label_map' is the organ label map, 'labels' the diagnostic labels
    manifest.write_text(f"case_id,path,modality,labels,label_map\nk1,{ct_small},CT,DOID:263,{ct_labels}\n"
                        "slide,x.svs,WSI,,\n")
    args = ("ct", "embed", manifest, "--tower", "resnet3d-tiny", "--random-weights", "-o", out, "--organ", "kidneys",
            "--box-mm", "150,150,90", "--size", "64,64,24", "--cache", tmp_path / "cache", "--device", "cpu", "--json")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    summary = first.json_lines()[-1]
    assert summary["embedded"] == 1 and summary["embed_dim"] == 64
    ids, emb = read_embeddings(out)
    assert ids == ["k1"] and emb.shape == (1, 64) and np.isfinite(emb).all()
    resolved = json.loads((tmp_path / "emb.h5.config.json").read_text())
    assert resolved["ct_preprocess"]["organ_crop"]["labels"] == ["kidneys"]
    assert resolved["ct_preprocess"]["spatial_size"] == [64, 64, 24] and resolved["encoder"] == "resnet3d-tiny"


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, ct_small):
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    nan = tmp_path / "nan.nii.gz"
    arr = np.zeros((6, 6, 6), dtype=np.float32)
    arr[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), nan)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(ct_small.read_bytes()[:20000])
    nopix = tmp_path / "nopix"
    nopix.mkdir()
    for f in write_ct_series(tmp_path / "src", ct_small, slices=range(2)).iterdir():
        ds = pydicom.dcmread(f)
        del ds.PixelData
        ds.save_as(nopix / f.name)
    mr = write_ct_series(tmp_path / "mr", ct_small, slices=range(3), modality="MR")
    cases = [(empty, "empty folder"), (nan, "NaN"), (cut, "truncated"), (nopix, "pixel data"),
             (mr, "modality is MR"), (tmp_path / "gz.nii.gz", "not found")]
    (tmp_path / "fake").write_bytes(gzip.compress(b"x"))
    for path, needle in cases:
        res = run_cli("ct", "preprocess", path, "--cache", cache)
        assert_clean_error(res, needle)
    assert not cache.exists() or not any(cache.rglob("*.npz"))
    assert_clean_error(run_cli("ct", "info", empty), "empty folder")
    assert_clean_error(run_cli("ct", "preprocess", ct_small, "--window", "liverish", "--cache", cache), "liverish")


def test_info_on_a_manifest_streams_one_line_per_case(tmp_path, ct_small, dicom_j2k):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path\nnii,{ct_small}\ndcm,{dicom_j2k}\nbad,{tmp_path / 'missing.nii.gz'}\n")
    stopped = run_cli("ct", "info", manifest, "--json")
    assert_clean_error(stopped, "missing.nii.gz", "not found")  # without --skip-errors the failure stops the batch
    res = run_cli("ct", "info", manifest, "--json", "--skip-errors")
    assert res.returncode == 3  # one case failed (exit 3, as slide and run); the others are still reported
    lines = res.json_lines()
    by_id = {r["case_id"]: r for r in lines[:-1]}
    assert by_id["nii"]["orientation"] == "RAS" and by_id["dcm"]["slices"] == 10
    assert by_id["dcm"]["transfer_syntax"].startswith("JPEG 2000") and by_id["bad"]["status"] == "error"
    assert lines[-1]["failed"] == 1


# ---------------------------------------------------------------------------------------- issue 16, item 6
def _cut_edge_slice(folder):
    edge = max(sorted(folder.iterdir()), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    edge.write_bytes(edge.read_bytes()[:900])
    return edge


def test_a_truncated_edge_slice_is_refused_or_warned_visibly(tmp_path, ct_small):
    """Before: exit 0, a 19-slice volume, and nothing printed."""
    folder = write_ct_series(tmp_path / "series", ct_small, slices=range(20))
    edge = _cut_edge_slice(folder)
    cache = tmp_path / "cache"
    refused = run_cli("ct", "preprocess", folder, "--cache", cache, "--size", "32,32,8")
    assert_clean_error(refused, "missing slices", edge.name, "--allow-irregular")
    human = run_cli("ct", "preprocess", folder, "--cache", cache, "--size", "32,32,8", "--allow-irregular")
    assert human.returncode == 0, human.stderr
    assert human.stderr.count("warning: series: missing slices") == 1 and edge.name in human.stderr
    js = run_cli("ct", "preprocess", folder, "--cache", cache, "--size", "32,32,8", "--allow-irregular", "--json")
    warned = [w for w in js.json()["warnings"] if "missing slices" in w]  # a cache hit warns again
    assert len(warned) == 1 and edge.name in warned[0] and js.json()["cached"] == 1


def test_ct_batches_share_the_exit_code_and_skip_errors(tmp_path, ct_small):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path\nok,{ct_small}\nbad,{tmp_path / 'missing.nii.gz'}\n")
    common = ["--cache", tmp_path / "cache", "--size", "32,32,8"]
    assert_clean_error(run_cli("ct", "preprocess", manifest, *common), "missing.nii.gz")
    emb = run_cli("ct", "embed", manifest, "--tower", "resnet3d-tiny", "--random-weights", "--out", tmp_path / "e.npz",
                  *common, "--skip-errors", "--json")
    assert emb.returncode == 3 and emb.json()["embedded"] == 1 and emb.json()["failed"][0]["case_id"] == "bad"
