"""The ``manifest`` training dataset on real data: BreastMNIST written out as PNG files with captions, and the shared
CT volumes with reports. Groups come from the tagger (negated mentions excluded), bad rows are named by row and
column, counts and skipped rows land in the run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medvl.errors import InputError
from medvl.train.data import build_dataset
from tests.conftest import assert_clean_error, run_cli
from tests.train.cohort import CAPTIONS, breastmnist_cohort, write_manifest

IMAGE = {"size": 32, "channels": "grayscale", "mean": [0.5], "std": [0.25], "interpolation": "bilinear"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return breastmnist_cohort(tmp_path_factory.mktemp("cohort"), n_train=48, n_test=16)


def _dataset(manifest: Path, **options):
    return build_dataset("manifest", {"manifest": str(manifest), "image": IMAGE, **options})


def test_groups_come_from_the_captions_and_negated_mentions_are_no_label(cohort):
    ds = _dataset(cohort)
    texts = ds.source.rows.texts
    by_text = {texts[i]: ds.group_names[g] for i, g in zip(ds.index, ds.group_ids, strict=True)}
    # "benign breast fibroadenoma, no evidence of breast cancer": the negated cancer is not its group
    assert by_text[CAPTIONS[1][1]] == "DOID:1618"
    assert by_text[CAPTIONS[0][0]] == "DOID:1612" and by_text[CAPTIONS[0][1]] == "DOID:3459"
    # a caption naming no concept is a group of its own (one per row)
    untagged = [n for n in ds.group_names if n.startswith("row ")]
    assert len(untagged) == sum(t == CAPTIONS[1][2] for t in (texts[i] for i in ds.index))
    # breast carcinoma is a descendant of breast cancer: hierarchy relatives are no negatives
    g = {n: i for i, n in enumerate(ds.group_names)}
    assert bool(ds.group_relatives[g["DOID:1612"], g["DOID:3459"]])
    assert not bool(ds.group_relatives[g["DOID:1612"], g["DOID:1618"]])
    counts = ds.counts()
    assert counts["rows"] == 48 and counts["tagged_rows"] == 48 - len(untagged)
    assert counts["items_per_concept"]["DOID:1618"]["name"] == "breast fibroadenoma"
    dropped = _dataset(cohort, concepts={"untagged": "drop"})
    assert len(dropped) == 48 - len(untagged) and dropped.counts()["dropped_untagged"] == len(untagged)


def test_items_read_the_png_files_through_the_image_transform(cohort):
    from PIL import Image

    from medvl.models.transforms import ImageTransformConfig, image_transform

    ds = _dataset(cohort, augment=False)
    item = ds.item(0, torch.Generator().manual_seed(0))
    row = ds.source.rows.rows[ds.index[0]]
    expected = image_transform(torch.as_tensor(list(Image.open(row.path).getdata()), dtype=torch.uint8)
                               .view(1, 28, 28), ImageTransformConfig.from_dict(IMAGE))[0]
    assert torch.equal(item["image"], expected) and item["image"].shape == (3, 32, 32)
    assert ds.label_names == ["DOID:1612", "DOID:1618"]
    assert item["label"] == ds.label_names.index(ds.labels_of(0)[0])
    concepts = _dataset(cohort, labels_from="concepts")
    hot = concepts.item(0, None)["label"]
    assert hot.shape == (len(concepts.label_names),) and "DOID:3459" in concepts.label_names
    assert [concepts.label_names[i] for i in hot.nonzero().flatten().tolist()] == concepts.labels_of(0)


def test_the_group_balanced_sampler_works_on_the_tagged_groups(cohort):
    from medvl.train.samplers import build_sampler

    ds = _dataset(cohort, concepts={"untagged": "drop"})
    sampler = build_sampler("group-balanced", ds, 6, 3, 0, {})
    for batch in sampler.batches(0):
        groups = [ds.group_ids[i] for i in batch]
        assert len(set(groups)) == 3 and all(groups.count(g) == 2 for g in set(groups))


def _bad_cohort(folder: Path, cohort: Path, edit) -> Path:
    import csv

    rows = list(csv.DictReader(open(cohort, encoding="utf-8")))[:12]
    for r in rows:
        r["path"] = str(cohort.parent / r["path"])
    edit(rows)
    folder.mkdir(parents=True, exist_ok=True)
    return write_manifest(folder / "manifest.csv", rows)


def _set(i: int, column: str, value: str):
    def edit(rows):
        rows[i][column] = value
    return edit


def _held_out_label(i: int, label: str):
    def edit(rows):  # the classes are those of the training split: a test row's label must be one of them
        rows[i].update(labels=label, split="test")
    return edit


def _undecodable(folder: Path):
    def edit(rows):
        bad = folder / "broken.png"
        folder.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        rows[4]["path"] = str(bad)
    return edit


BAD_ROWS = {
    "missing file": (lambda f: _set(2, "path", "nowhere.png"), "row 3, column 'path'", "not found"),
    "undecodable file": (_undecodable, "row 5, column 'path'", "cannot read 'broken.png'"),
    "empty text": (lambda f: _set(6, "report", ""), "row 7, column 'report'", "empty text"),
    "unknown label": (lambda f: _held_out_label(1, "DOID:9999999"), "row 2, column 'labels'", "unknown label"),
    "unknown split": (lambda f: _set(3, "split", "holdout"), "row 4, column 'split'", "unknown split 'holdout'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_each_bad_row_is_one_error_naming_row_and_column(cohort, tmp_path, case):
    make, where, what = BAD_ROWS[case]
    manifest = _bad_cohort(tmp_path, cohort, make(tmp_path))
    with pytest.raises(InputError) as err:
        _dataset(manifest)
    assert where in str(err.value) and what in str(err.value) and "1 bad row(s)" in str(err.value)
    kept = _dataset(manifest, skip_bad=True)
    assert len(kept.source.rows.problems) == 1 and kept.source.rows.problems[0].to_dict()["row"] == int(
        where.split()[1].rstrip(","))


def test_a_manifest_without_the_text_column_or_a_usable_row_starts_nothing(cohort, tmp_path):
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("case_id,modality,path\na,image,x.png\n")
    with pytest.raises(InputError, match="column 'report': missing"):
        _dataset(no_text)
    no_path = tmp_path / "no_path.csv"
    no_path.write_text("case_id,modality,report\na,image,breast cancer\n")
    with pytest.raises(InputError, match="missing required column"):
        _dataset(no_path)
    nothing = _bad_cohort(tmp_path / "none", cohort, lambda rows: [r.update(path="gone.png") for r in rows])
    with pytest.raises(InputError, match="no usable 'image' row"):
        _dataset(nothing, skip_bad=True)


def _tiny(example: str, folder: Path, edit) -> Path:
    """The shipped example, as its tiny CPU twin (tiny towers, a few steps), beside the manifest in ``folder``."""
    import yaml

    from medvl.resources import config_dir

    data = yaml.safe_load((config_dir() / "examples" / example).read_text())
    edit(data)
    data["tensorboard"], data["threads"] = False, 1
    out = folder / example
    out.write_text(yaml.safe_dump(data))
    return out


def _tiny_images(data: dict) -> None:
    data["model"] = "tiny-clip"
    data["data"]["options"]["image"]["size"] = 32
    data["data"]["batch_size"], data["data"]["groups_per_batch"] = 8, 2
    stage = data["stages"][0]
    stage["steps"], stage["eval_every"], stage["warmup_steps"] = 4, 2, 1
    stage["evaluate"][0]["options"]["max_train"] = 24
    data["checkpoint_every"] = 2


def _train(config: Path, out: Path, skip_bad: bool = False) -> dict:
    """What ``medvl train --config config --out out`` runs, in this process (one CLI start less)."""
    from medvl.train import TrainConfig, train
    from medvl.train.check import resolve_data_paths

    return train(resolve_data_paths(TrainConfig.from_file(config), config.parent, skip_bad), out)


def test_own_images_example_trains_evaluates_and_the_model_works_in_zeroshot(cohort, tmp_path):
    from medvl.train import TrainConfig
    from medvl.train.check import check_data, resolve_data_paths

    folder = tmp_path / "mine"
    shutil.copytree(cohort.parent, folder)
    config = _tiny("own-images.yaml", folder, _tiny_images)
    counts = check_data(resolve_data_paths(TrainConfig.from_file(config), folder))["stages"]["keep"]
    assert counts["rows"] == 48 and counts["heldout"] == {"test": 16} and counts["skipped_rows"] == 0
    run = tmp_path / "run"
    summary = _train(config, run)
    saved = json.loads((run / "data" / "keep.counts.json").read_text())
    assert saved["tagged_rows"] == counts["tagged_rows"] and saved["groups"] == counts["groups"]
    evals = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if "evaluation" in ln]
    assert [(e["when"], e["step"]) for e in evals] == [("before", 0), ("step", 2), ("after", 4)]
    names = ("auc", "balanced_accuracy", "recall@1", "recall@5", "recall@10", "zero_shot_balanced_accuracy")
    after = summary["evaluations"]["keep"]["heldout"]["after"]
    assert all(0.0 <= after[n] <= 1.0 for n in names) and after["items"] == 16
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "recall@1" and best["value"] == max(e["recall@1"] for e in evals[1:])
    assert summary["best"]["step"] == best["step"] and (run / "best" / "model.safetensors").is_file()
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["preprocessing"]["image"]["size"] == 32 and meta["domains"]["image"]["modality"] == "ultrasound"
    png = sorted((folder / "images").glob("test_*.png"))[0]
    _the_apps_use_it(run / "model", png, tmp_path / "workspace")
    zs = run_cli("zeroshot", png, "--model", run / "model", "--classes", "DOID:1612,DOID:1618", "--json")
    assert zs.returncode == 0, zs.stderr
    top = zs.json()["result"]["top"]
    assert {t["id"] for t in top} == {"DOID:1612", "DOID:1618"}
    assert abs(sum(t["probability"] for t in top) - 1) < 1e-3


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_two_processes_train_on_the_manifest(cohort, tmp_path):
    """The own-images example under torchrun (2 gloo processes) trains on the manifest's PNG files; rank 0 alone
    prints, evaluates the held-out split and writes the model and the best checkpoint."""
    folder = tmp_path / "mine"
    shutil.copytree(cohort.parent, folder)
    config = _tiny("own-images.yaml", folder, _tiny_images)
    run = tmp_path / "run"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "medvl",
         "train", "--config", str(config), "--out", str(run), "--json"],
        capture_output=True, text=True, env={**os.environ, "MEDVL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1, "only rank 0 prints the result"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["evaluations"]["keep"]["heldout"]["after"]["items"] == 16
    assert (run / "model" / "model.safetensors").is_file() and (run / "best" / "model.safetensors").is_file()


def _the_apps_use_it(model: Path, png: Path, workspace: Path) -> None:
    """The apps list the trained model from the workspace (no random-weights badge) and encode an image file with
    the transform it was trained with."""
    from PIL import Image

    from medvl.apps.catalog import model_badge, scan_workspace
    from medvl.models.transforms import ImageTransformConfig, image_transform
    from medvl.tasks.space import JointSpace

    shutil.copytree(model, workspace / "models" / "mine")
    assert scan_workspace(workspace).models == [workspace / "models" / "mine"]
    assert model_badge(workspace / "models" / "mine") is None  # both towers trained
    space = JointSpace.load(workspace / "models" / "mine")
    pixels = torch.as_tensor(list(Image.open(png).getdata()), dtype=torch.uint8).view(1, 28, 28)
    with torch.inference_mode():
        direct = space.model.encode_image(image_transform(pixels, ImageTransformConfig.from_dict(IMAGE))).numpy()
    assert np.allclose(space.encode_image_file(png), direct, atol=1e-6)


def test_skip_bad_trains_on_the_rest_and_lists_the_skipped_rows(cohort, tmp_path):
    folder = tmp_path / "bad"
    _bad_cohort(folder, cohort, _set(2, "path", "nowhere.png"))
    config = _tiny("own-images.yaml", folder, _tiny_images)
    config.write_text(config.read_text().replace("split: test", "split: train"))  # the 12 rows are all train rows
    refused = run_cli("train", "--config", config, "--out", tmp_path / "refused")
    assert_clean_error(refused, "row 3, column 'path'", "--skip-bad")
    assert not (tmp_path / "refused" / "summary.json").exists() and not (tmp_path / "refused" / "model").exists()
    run = tmp_path / "run"
    _train(config, run, skip_bad=True)
    skipped = [json.loads(ln) for ln in (run / "data" / "keep.skipped.jsonl").read_text().splitlines()]
    assert skipped == [{"row": 3, "column": "path", "problem": "'nowhere.png' not found"}]
    assert json.loads((run / "data" / "keep.counts.json").read_text())["rows"] == 11


def test_dataloader_workers_decode_the_same_batches(cohort):
    from medvl.train.loading import local_batches
    from medvl.train.samplers import build_sampler

    ds = _dataset(cohort)
    batches = build_sampler("shuffled", ds, 8, 0, 0, {}).batches(0)
    plain = list(local_batches(ds, batches, 1, 0, 1, 7))
    workers = list(local_batches(ds, batches, 1, 0, 1, 7, workers=2))
    assert len(plain) == len(batches) - 1 == len(workers)
    for a, b in zip(plain, workers, strict=True):
        assert torch.equal(a["image"], b["image"]) and a["text"] == b["text"] and torch.equal(a["group"], b["group"])
