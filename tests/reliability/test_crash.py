"""Crash consistency: SIGKILL a real ``medvl`` process in the middle of writing an output, rerun, compare.

The kill lands inside an atomic write (a hook loaded into the killed process truncates the temporary to half and
SIGKILLs itself before the rename), the worst moment for a writer without temp + rename. After the rerun the outputs
must equal an uninterrupted run and no temporary or half-written file may remain. Covered elsewhere (referenced in
docs/reliability.md, not repeated here): training (``tests/train/test_engine.py``, SIGKILL then ``--resume`` gives
bit-identical weights) and whole cohort runs (``tests/pipelines/test_run.py``, SIGKILL between cases then rerun).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medvl.atomic import TMP_MARKER
from medvl.cli.main import app
from medvl.resources import bundled

KILL_TIMEOUT = 180


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*{TMP_MARKER}")] if folder.exists() else []


#: loaded by the killed process (sitecustomize): the nth atomic write truncates its temporary to half and SIGKILLs
#: the process before the rename, the moment a writer without temp + rename would leave a half-written output
_HOOK = """
import contextlib, os, signal
from pathlib import Path
import medvl.atomic as atomic

_orig, _count = atomic.atomic_path, [0]


@contextlib.contextmanager
def _dying(target):
    with _orig(target) as tmp:
        yield tmp
        _count[0] += 1
        if _count[0] == int(os.environ["MEDVL_KILL_AT_WRITE"]):
            size = tmp.stat().st_size if tmp.exists() else 0
            os.truncate(tmp, size // 2) if size else None
            Path(os.environ["MEDVL_KILL_LOG"]).write_text(str(target))
            os.kill(os.getpid(), signal.SIGKILL)


atomic.atomic_path = _dying
"""


def kill_mid_write(args: list[str], nth: int, tmp_path: Path) -> Path:
    """Run ``medvl *args`` in a process SIGKILLed inside its ``nth`` atomic write; return that write's target."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_HOOK)
    log = hook / "killed_at.txt"
    env = {**os.environ, "MEDVL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "MEDVL_KILL_AT_WRITE": str(nth),
           "MEDVL_KILL_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "medvl", *args], env=env, capture_output=True, text=True,
                          timeout=KILL_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, f"not killed (rc {proc.returncode}): {proc.stderr[-500:]}"
    return Path(log.read_text())


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return result


def _h5_arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path) as f:
            out[path.name] = {k: f[k][()] for k in f.keys()}
    return out


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory) -> Path:
    from tests.pathology.synthetic_slides import write_pyramid_tiff

    folder = tmp_path_factory.mktemp("cohort")
    second = write_pyramid_tiff(folder / "second.tiff", width=1024, height=768, mpp=0.5, levels=2)
    pd.DataFrame({"case_id": ["a", "b"], "modality": ["slide"] * 2,
                  "path": [str(bundled("slide")), str(second)]}).to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def test_feature_extraction_killed_mid_write(two_slides, tmp_path):
    def args(out: Path) -> list[str]:
        return ["slide", "extract", str(two_slides), "--out", str(out), "--encoder", "timm-tiny", "--random-weights",
                "--mpp", "2.0", "--size", "64", "--batch-size", "16", "--device", "cpu", "--workers", "1"]

    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # writes: tissue png, geojson, tile h5, then the features h5 of the first slide: killed inside that one
    writing = kill_mid_write(args(killed), 4, tmp_path)
    assert writing.name == "cmu-1-small-region.h5" and _temporaries(killed)
    with h5py.File(writing) as f:  # the final name still holds the complete tile file, without features
        assert "coords" in f and "features" not in f
    _invoke(args(killed))
    _invoke(args(reference))
    assert _temporaries(killed) == []
    got, want = _h5_arrays(killed), _h5_arrays(reference)
    assert sorted(got) == sorted(want) == ["cmu-1-small-region.h5", "second.h5"]
    for name in want:
        assert got[name].keys() == want[name].keys() and "features" in want[name]
        for key in want[name]:
            np.testing.assert_allclose(got[name][key], want[name][key], rtol=0, atol=1e-6, err_msg=f"{name}:{key}")


def test_ct_caching_killed_mid_write(tmp_path):
    from tests.radiology.dicom_series import write_ct_series

    series = write_ct_series(tmp_path / "series", bundled("ct_small"), slices=range(12))
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,path\nsmall,{bundled('ct_small')}\ndcm,{series}\n")

    def args(cache: Path) -> list[str]:
        return ["ct", "preprocess", str(manifest), "--cache", str(cache), "--size", "48,48,24"]

    killed, reference = tmp_path / "killed", tmp_path / "reference"
    writing = kill_mid_write(args(killed), 2, tmp_path)  # config.json, then the first volume
    assert writing.suffix == ".npz" and not writing.exists() and _temporaries(killed)
    for tmp in _temporaries(killed):  # the cache shares its folder with live writers: it sweeps those idle > 60 s
        os.utime(tmp, (time.time() - 120, time.time() - 120))
    _invoke(args(killed))
    _invoke(args(reference))
    assert _temporaries(killed) == []
    got = {p.relative_to(killed): p for p in killed.rglob("*.npz")}
    want = {p.relative_to(reference): p for p in reference.rglob("*.npz")}
    assert sorted(got) == sorted(want) and len(want) == 2
    for rel in want:
        with np.load(got[rel], allow_pickle=False) as a, np.load(want[rel], allow_pickle=False) as b:
            assert a.files == b.files
            for key in b.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{rel}:{key}")


def test_index_build_killed_mid_write(tmp_path):
    rng = np.random.default_rng(0)
    emb = tmp_path / "emb.npz"
    np.savez(emb, embeddings=rng.normal(size=(2000, 64)).astype(np.float32),
             ids=np.array([f"case-{i:05d}" for i in range(2000)]))
    query = tmp_path / "q.npz"
    np.savez(query, embeddings=rng.normal(size=(3, 64)).astype(np.float32), ids=np.array(["q0", "q1", "q2"]))

    def args(out: Path) -> list[str]:
        return ["index", "build", str(emb), "--out", str(out), "--kind", "flat", "--trust-provenance"]

    killed, reference = tmp_path / "killed", tmp_path / "reference"
    writing = kill_mid_write(args(killed), 2, tmp_path)  # index.faiss written, killed inside metadata.parquet
    assert writing.name == "metadata.parquet" and _temporaries(killed)
    assert CliRunner().invoke(app, ["index", "search", "--index", str(killed), "--query", str(query)]).exit_code != 0
    _invoke(args(killed))
    _invoke(args(reference))
    assert _temporaries(killed) == []
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in reference.iterdir())
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "metadata.parquet"),
                                  pd.read_parquet(reference / "metadata.parquet"))
    searches = [_invoke(["index", "search", "--index", str(folder), "--query", str(query), "-k", "5", "--json"])
                for folder in (killed, reference)]
    assert searches[0].stdout == searches[1].stdout


def test_ct_cache_sweeps_only_stale_temporaries(tmp_path):
    from medvl.radiology.cache import VolumeCache
    from medvl.radiology.transforms import CTPreprocessConfig

    config = CTPreprocessConfig()
    folder = VolumeCache(tmp_path, config).dir
    folder.mkdir(parents=True)
    stale, live = folder / f".a.npz.x{TMP_MARKER}", folder / f".b.npz.y{TMP_MARKER}"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    os.utime(stale, (time.time() - 600, time.time() - 600))
    VolumeCache(tmp_path, config)
    assert not stale.exists() and live.exists()  # another process may still be writing the fresh one
