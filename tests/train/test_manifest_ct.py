"""``ct`` rows of the ``manifest`` dataset on the shared CT volumes with reports written for the test: the own-ct
example's tiny twin (report attributes from the tagger, then alignment), the CT chain in the checkpoint, and the
trained model in ``ct embed``, ``zeroshot`` and ``index``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvl.errors import InputError
from medvl.resources import shared_data_dir
from medvl.train.data import build_dataset
from tests.conftest import run_cli
from tests.train.cohort import ct_cohort, write_manifest

CHAIN = {"spacing": [8.0, 8.0, 8.0], "spatial_size": [24, 24, 12]}


@pytest.fixture(scope="module")
def ct_dir() -> Path:
    shared = shared_data_dir()
    if shared is None or not (shared / "ct" / "example_ct.nii.gz").is_file():
        pytest.skip("shared CT volumes not available")
    return shared / "ct"


def _tiny_ct(data: dict) -> None:
    data["model_config"] = {"towers": {"volume": {"name": "resnet3d-tiny"}, "text": {"name": "hf-text-tiny"}},
                            "embed_dim": 16}
    data["data"]["options"]["preprocess"] = CHAIN
    data["data"]["batch_size"] = 2
    data["stages"][0]["data"]["options"]["preprocess"] = CHAIN
    data["stages"][0]["data"]["batch_size"] = 2
    for stage in data["stages"]:
        stage["steps"] = 2
    data["stages"][1]["eval_every"] = 0


def test_ct_rows_read_through_the_ct_chain_with_attributes_from_the_reports(ct_dir, tmp_path):
    from medvl.radiology.transforms import CTPreprocessConfig

    small = str(ct_dir / "example_ct_sm.nii.gz")
    manifest = write_manifest(tmp_path / "manifest.csv", [
        {"case_id": "a", "modality": "ct", "path": small, "report": "angiomyolipoma, no renal cell carcinoma"},
        {"case_id": "b", "modality": "ct", "path": small, "report": "renal cell carcinoma with hydronephrosis"},
        {"case_id": "c", "modality": "image", "path": small, "report": "not a CT row of this dataset"},
    ])
    ds = build_dataset("manifest", {"manifest": str(manifest), "modality": "ct", "preprocess": CHAIN,
                                    "cache": str(tmp_path / "cache"), "labels_from": "concepts"})
    assert ds.fields == {"volume": "volume", "text": "text"} and len(ds) == 2
    assert ds.preprocessing["volume"] == CTPreprocessConfig.from_dict(CHAIN)
    assert ds.domains["volume"].modality == "ct"
    # negated "no renal cell carcinoma" is no attribute of row 1
    assert ds.label_names == ["DOID:11111", "DOID:3314", "DOID:4450"]
    assert ds.labels_of(0) == ["DOID:3314"] and ds.labels_of(1) == ["DOID:4450", "DOID:11111"]
    item = ds.item(1, None)
    assert item["volume"].shape == (1, 12, 24, 24) and item["label"].tolist() == [1.0, 0.0, 1.0]
    assert ds.counts()["rows_per_split"] == {"train": 2}


@pytest.mark.slow
def test_own_ct_example_learns_report_attributes_then_aligns_and_records_the_chain(ct_dir, tmp_path):
    from tests.train.test_manifest_data import _tiny, _train

    folder = tmp_path / "ct"
    ct_cohort(folder, ct_dir)
    config = _tiny("own-ct.yaml", folder, _tiny_ct)
    run = tmp_path / "run"
    summary = _train(config, run)
    attributes = json.loads((run / "data" / "report-attributes.counts.json").read_text())
    # the tagger's concepts of the reports ("no renal cell carcinoma" is negated: not an attribute)
    assert attributes["classes"] == ["DOID:11111", "DOID:3314", "DOID:4467"]
    assert (folder / "cache").is_dir()  # the manifest's relative cache, in the config's folder
    after = summary["evaluations"]["align"]["heldout"]["after"]
    assert after["items"] == 2 and {"recall@1", "auc", "zero_shot_balanced_accuracy"} <= set(after)
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["preprocessing"]["volume"]["spatial_size"] == CHAIN["spatial_size"]
    assert meta["domains"]["volume"]["modality"] == "ct"

    cases = tmp_path / "cases.csv"
    cases.write_text(f"case_id,path\nk1,{ct_dir / 'example_ct.nii.gz'}\nk2,{ct_dir / 'example_ct_sm.nii.gz'}\n")
    joint = tmp_path / "joint.npz"
    r = run_cli("ct", "embed", cases, "--model", run / "model", "-o", joint, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    # the twin's text tower is a frozen random initialisation (the example's is the pretrained MiniLM): asked for
    assert meta["random_weights"] == {"volume": False, "text": True}
    zs = run_cli("zeroshot", joint, "--model", run / "model", "--classes", "malignant,benign", "--json",
                 "--random-weights")
    assert zs.returncode == 0, zs.stderr
    assert abs(sum(t["probability"] for t in zs.json()["result"]["top"]) - 1) < 1e-3
    index = tmp_path / "index"
    b = run_cli("index", "build", joint, "--model", run / "model", "--out", index, "--json", "--random-weights")
    assert b.returncode == 0, b.stderr
    assert b.json()["count"] == 2


def test_a_volume_that_fails_preprocessing_names_its_row(ct_dir, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    manifest = write_manifest(tmp_path / "manifest.csv", [
        {"case_id": "a", "modality": "ct", "path": str(ct_dir / "example_ct_sm.nii.gz"), "report": "renal cyst"},
        {"case_id": "b", "modality": "ct", "path": str(broken), "report": "renal cyst"},
    ])
    options = {"manifest": str(manifest), "modality": "ct", "preprocess": CHAIN, "labels_from": "none"}
    with pytest.raises(InputError, match=r"row 2, column 'path': cannot read 'broken.nii.gz'"):
        build_dataset("manifest", options)
    kept = build_dataset("manifest", {**options, "skip_bad": True})
    assert len(kept) == 1 and kept.item(0, None)["volume"].shape == (1, 12, 24, 24)
