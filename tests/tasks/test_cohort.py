"""Duplicate and leakage detection (medvl.tasks.cohort, ``medvl cohort check``) on real BreastMNIST images."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from medvl.errors import InputError
from medvl.resources import bundled
from medvl.tasks.cohort import LeakageConfig, check_leakage
from medvl.tasks.cohort.hashes import (
    _dct_matrix,
    area_resize,
    dhash,
    dihedral,
    hamming,
    phash,
    phash_crops,
    pixel_hash,
)
from tests.conftest import assert_clean_error


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    with np.load(bundled("breastmnist")) as d:
        return {"train": d["train_images"][:40], "test": d["test_images"][:12]}


def _jpeg(img: np.ndarray, quality: int = 60) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def _aligned_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference at the best flip/rotation (after resizing b onto a)."""
    b = np.asarray(Image.fromarray(b).resize(a.shape[::-1], Image.Resampling.BILINEAR), dtype=np.float32)
    return min(float(np.abs(v.astype(np.float32) - b).mean()) for v in dihedral(a) if v.shape == b.shape)


# ------------------------------------------------------------------------------------------------ fingerprints
def test_fast_transforms_match_their_definitions():
    from scipy.fft import dctn

    x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert np.allclose(_dct_matrix(32) @ x @ _dct_matrix(32).T, dctn(x, norm="ortho"), atol=1e-5)
    y = np.random.default_rng(1).random((64, 48))
    assert np.allclose(area_resize(y, 32, 24), y.reshape(32, 2, 24, 2).mean((1, 3)), atol=1e-6)
    img = (np.random.default_rng(2).random((28, 30)) * 255).astype(np.uint8)
    assert (phash_crops(img)[0] == phash(img)).all()


def test_perceptual_hashes_survive_edits_and_separate_images(images):
    a, other = images["train"][0], images["train"][5]
    assert hamming(phash(a), phash(_jpeg(a))) <= 8
    assert hamming(dhash(a), dhash(np.asarray(Image.fromarray(a).resize((56, 56))))) <= 8
    assert min(hamming(phash(v), phash(a[:, ::-1])) for v in dihedral(a)) == 0  # a flip is one of the views
    assert hamming(phash(a), phash(other)) > 12
    # pixel hash: the same pixels in another container are identical, one changed pixel is not
    assert pixel_hash(a) == pixel_hash(np.asarray(Image.open(_png_bytes(a))))
    changed = a.copy()
    changed[0, 0] ^= 1
    assert pixel_hash(changed) != pixel_hash(a)


def _png_bytes(img: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    buf.seek(0)
    return buf


# ------------------------------------------------------------------------------------------------ cohort
def _manifest(tmp_path, images, planted):
    rows = ["case_id,modality,path,split,report"]
    for split in ("train", "test"):
        for i, img in enumerate(images[split]):
            Image.fromarray(img).save(tmp_path / f"{split}{i}.png")
            rows.append(f"{split}-{i},image,{split}{i}.png,{split},")
    for name, (img, split, case) in planted.items():
        Image.fromarray(img).save(tmp_path / name) if not isinstance(img, str) else shutil.copy(tmp_path / img,
                                                                                              tmp_path / name)
        rows.append(f"{case},image,{name},{split},")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_planted_duplicates_are_found_with_their_evidence(tmp_path, images):
    t = images["test"]
    big = np.asarray(ImageEnhance.Brightness(Image.fromarray(t[3])).enhance(1.2).resize((40, 40)))
    planted = {
        "copy.png": ("test0.png", "train", "p-copy"),           # byte-identical file
        "jpeg.jpg": (_jpeg(t[1]), "train", "p-jpeg"),
        "flip.png": (np.ascontiguousarray(t[2][:, ::-1]), "train", "p-flip"),
        "jitter_resize.png": (big, "train", "p-jitter"),
        "crop.png": (np.ascontiguousarray(t[4][2:27, 3:27]), "train", "p-crop"),
        "samecase.png": (images["train"][8], "test", "train-8"),  # case train-8 also in test (scanned twice)
    }
    rec = check_leakage(_manifest(tmp_path, images, planted), LeakageConfig(text_encoder=None, splits=["train",
                                                                                                       "test"]))
    pairs = {frozenset((p["a"]["case_id"], p["b"]["case_id"])): p for p in rec["pictures"]["pair_list"]}
    expect = {"p-copy": "test-0", "p-jpeg": "test-1", "p-flip": "test-2", "p-jitter": "test-3", "p-crop": "test-4"}
    for planted_case, original in expect.items():
        pair = pairs[frozenset((planted_case, original))]
        assert {pair["a"]["split"], pair["b"]["split"]} == {"train", "test"}
    assert pairs[frozenset(("p-copy", "test-0"))]["level"] == "exact"
    assert "same_file" in pairs[frozenset(("p-copy", "test-0"))]["rules"]
    assert pairs[frozenset(("p-flip", "test-2"))]["evidence"]["phash"] == 0
    assert pairs[frozenset(("p-jpeg", "test-1"))]["level"] == "near"
    # every other flagged pair really looks alike (BreastMNIST has genuine near-duplicates of its own)
    by_case = {f"{s}-{i}": images[s][i] for s in ("train", "test") for i in range(len(images[s]))}
    for key, pair in pairs.items():
        if key & set(expect):
            continue
        a, b = (by_case.get(pair[side]["case_id"]) for side in ("a", "b"))
        if a is not None and b is not None:
            assert _aligned_mad(a, b) < 12, pair
    leak = rec["leakage"]
    assert leak["leaks"] and leak["cross_split_clusters"] >= 5
    assert {"case_id": "train-8", "splits": ["test", "train"]} in leak["case_ids_in_several_splits"]


def test_duplicate_reports_exact_and_near(tmp_path):
    reports = {
        "a": "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
        "b": "the HEART is normal in size;  the mediastinum is unremarkable. The lungs are clear XXXX.",  # same text
        "c": "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear bilaterally.",
        "d": "Large right pleural effusion with compressive atelectasis of the right lower lobe.",
        "e": "Stable cardiomegaly. Small left pleural effusion. No pneumothorax.",
    }
    rows = ["case_id,modality,path,split,report"] + [
        f"{k},text,{k}.txt,{'test' if k in 'bd' else 'train'},\"{v}\"" for k, v in reports.items()]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    rec = check_leakage(tmp_path / "m.csv", LeakageConfig(examples=True))
    pairs = {frozenset((p["a"]["case_id"], p["b"]["case_id"])): p for p in rec["texts"]["pair_list"]}
    assert pairs[frozenset("ab")]["level"] == "exact"
    assert pairs[frozenset("ac")]["level"] == "near" and "wording" in pairs[frozenset("ac")]["rules"]
    assert 0.9 < pairs[frozenset("ac")]["evidence"]["cosine"] <= 1.0
    assert not any(k & {"d", "e"} for k in pairs)
    (cluster,) = rec["texts"]["clusters"]
    assert cluster["size"] == 3 and cluster["cross_split"] and cluster["example"].startswith("the heart is normal")
    assert rec["texts"]["cross_split_pairs"] == {"test~train": 2}


def test_shared_iu_reports_have_templated_duplicates(shared_data):
    """Real IU chest X-ray reports: templated normal findings form exact-duplicate clusters."""
    import pandas as pd

    from medvl.io.manifest import Manifest, ManifestRow

    df = pd.read_csv(shared_data / "image_text" / "indiana_reports.csv").dropna(subset=["findings"]).head(300)
    rows = [ManifestRow(k + 1, f"iu-{uid}", "text", shared_data / "missing.txt", {"report": text})
            for k, (uid, text) in enumerate(zip(df["uid"], df["findings"], strict=True))]
    rec = check_leakage(Manifest(shared_data / "iu.csv", rows, None), LeakageConfig(text_encoder=None))
    assert rec["texts"]["pairs"]["exact"] > 0
    assert rec["texts"]["clusters"][0]["size"] >= 3


def test_bad_manifests_are_refused(tmp_path, images):
    path = _manifest(tmp_path, {"train": images["train"][:3], "test": images["test"][:0]}, {})
    with pytest.raises(InputError, match="too small for the requested split check"):
        check_leakage(path, LeakageConfig(text_encoder=None, splits=["train", "test"]))
    (tmp_path / "one.csv").write_text("case_id,modality,path\nx,image,train0.png\n")
    with pytest.raises(InputError, match="at least two"):
        check_leakage(tmp_path / "one.csv")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "bad.csv").write_text("case_id,modality,path\nx,image,train0.png\ny,image,broken.png\n")
    with pytest.raises(InputError, match="broken.png: cannot read image"):
        check_leakage(tmp_path / "bad.csv")


def test_cli_check_hides_ids_writes_the_report_and_refuses_small_manifests(tmp_path, images, cli):
    planted = {"jpeg.jpg": (_jpeg(images["test"][1]), "train", "p-jpeg")}
    path = _manifest(tmp_path, {"train": images["train"][:6], "test": images["test"][:3]}, planted)
    res = cli("cohort", "check", "--manifest", path, "--text-encoder", "none", "--out", tmp_path / "rep.json",
              "--strict", "--json")
    assert res.returncode == 3, res.stderr
    data = res.json()
    assert data["leakage"]["leaks"] and "p-jpeg" not in res.stdout and '"case_id"' not in res.stdout
    report = json.loads((tmp_path / "rep.json").read_text())
    assert any({p["a"]["case_id"], p["b"]["case_id"]} == {"p-jpeg", "test-1"} for p in report["pictures"]["pair_list"])
    res = cli("cohort", "check", "--manifest", path, "--text-encoder", "none", "--splits", "train,val",
              "--out", tmp_path / "rep2.json")
    assert_clean_error(res, "too small for the requested split check", "no rows in val")
    assert not (tmp_path / "rep2.json").exists()


def test_train_check_hook_runs_the_leakage_check_on_recipe_manifests(tmp_path, images):
    from medvl.train.checks import leakage_report, manifests_of
    from medvl.train.config import TrainConfig

    planted = {"jpeg.jpg": (_jpeg(images["test"][1]), "train", "p-jpeg")}
    path = _manifest(tmp_path, {"train": images["train"][:4], "test": images["test"][:3]}, planted)
    cfg = TrainConfig.from_dict({"stages": [{"name": "a", "data": {"dataset": "breastmnist", "options": {}}},
                                            {"name": "b", "data": {"dataset": "breastmnist", "options": {}}}]})
    assert manifests_of(cfg) == [] and leakage_report(cfg) == []
    cfg.stages[0].data.options["manifest"] = str(path)  # a dataset that reads a cohort manifest
    (record,) = leakage_report(cfg, LeakageConfig(text_encoder=None))
    assert record["manifest_path"] == str(path) and record["leakage"]["leaks"]
