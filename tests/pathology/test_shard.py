"""Extraction over several devices: one process per device, the cohort shared between them, the same outputs as
one process (tested with 2 CPU processes)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medvl.errors import ConfigError, InputError
from medvl.pathology.extract import EncoderSpec, ExtractConfig
from medvl.pathology.pipeline import SlideJob
from medvl.pathology.shard import extract_sharded, resolve_devices, shard_slides
from medvl.pathology.tiling import TileConfig
from medvl.pathology.tissue import TissueConfig
from tests.pathology import synthetic_slides as syn


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, svs_path):
    d = tmp_path_factory.mktemp("cohort")
    jobs = [SlideJob("cmu", svs_path)]
    for i, (w, h) in enumerate([(1536, 1024), (1024, 768), (768, 512)]):
        path = syn.write_pyramid_tiff(d / f"s{i}.tiff", w, h, mpp=0.5, image=syn.he_scene(w, h, seed=i))
        jobs.append(SlideJob(f"s{i}", path))
    return jobs


def _features(out):
    feats = {}
    for path in sorted(out.glob("*.h5")):
        with h5py.File(path) as f:
            feats[path.stem] = (f["coords"][()], f["features"][()], f.attrs["encoder"])
    return feats


def test_two_processes_equal_one(cohort, tmp_path):
    spec = EncoderSpec(name="timm-tiny", random_weights=True)
    tiles, tissue, config = TileConfig(mpp=2.0, size=64), TissueConfig(), ExtractConfig(batch_size=16, workers=1)
    one = extract_sharded(cohort, tmp_path / "one", tiles, tissue, spec, config, ["cpu"], threads=1)
    two = extract_sharded(cohort, tmp_path / "two", tiles, tissue, spec, config, ["cpu", "cpu"], threads=1)
    assert [r["slide_id"] for r in two["records"]] == [j.slide_id for j in cohort]
    assert one["counts"] == two["counts"] == {"ok": 4}
    a, b = _features(tmp_path / "one"), _features(tmp_path / "two")
    assert a.keys() == b.keys() == {"cmu", "s0", "s1", "s2"}
    for key in a:
        np.testing.assert_array_equal(a[key][0], b[key][0])
        np.testing.assert_array_equal(a[key][1], b[key][1])  # bit-identical: same function, same threads
        assert a[key][2] == b[key][2]


def test_shares_are_balanced_and_deterministic(cohort):
    shares = shard_slides(cohort, 2)
    assert sorted(i for s in shares for i in s) == [0, 1, 2, 3] and all(shares)
    assert shard_slides(cohort, 2) == shares


def test_a_bad_slide_fails_after_the_others(cohort, tmp_path):
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(b"II*\0" + b"\0" * 64)
    jobs = [*cohort[1:3], SlideJob("bad", bad)]
    args = (TileConfig(mpp=2.0, size=64), TissueConfig(), EncoderSpec(name="timm-tiny", random_weights=True),
            ExtractConfig(workers=1))
    summary = extract_sharded(jobs, tmp_path / "o2", *args, ["cpu", "cpu"], skip_errors=True, threads=1)
    assert summary["counts"] == {"ok": 2, "error": 1} and (tmp_path / "o2" / "errors.json").is_file()
    with pytest.raises(InputError, match="bad.tiff"):  # the finished slides are skipped; the bad one is raised
        extract_sharded(jobs, tmp_path / "o2", *args, ["cpu"], threads=1)


def test_device_names():
    assert resolve_devices("cpu, cpu") == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="cuda:7 is not available"):
        resolve_devices("cuda:7")
