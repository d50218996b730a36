"""Two torchrun agents ("nodes") meet through a c10d rendezvous and train the tiny recipe together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medvl.resources import config_dir

TORCHRUN = Path(sys.executable).parent / "torchrun"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun beside the interpreter")
def test_two_node_c10d_rendezvous(tmp_path):
    out = tmp_path / "run"
    port = _free_port()
    env = {**os.environ, "MEDVL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                          "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "medvl-test", "--node-rank", str(rank),
                          "-m", "medvl", "train", "--config", str(config_dir() / "tiny-keep.yaml"), "--out", str(out),
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for rank in (0, 1)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-1500:] for r in results]
    printed = [json.loads(line) for r in results for line in r[0].splitlines() if line.startswith("{")]
    assert len(printed) == 1 and printed[0]["processes"] == 2  # only global rank 0 prints
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_steps"] == 6 and (out / "model" / "model.safetensors").is_file()
