"""2 processes (gloo) on one global batch give the loss and gradients of 1 process (tolerance 1e-5)."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from tests.train import ddp_worker


def test_ddp_two_processes_equal_one(tmp_path):
    mp.spawn(ddp_worker.worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ddp_worker.worker(0, 1, str(tmp_path / "unused"), str(tmp_path))
    two = torch.load(tmp_path / "world2.pt", weights_only=True)
    one = torch.load(tmp_path / "world1.pt", weights_only=True)
    assert set(two) == {"infonce", "infonce-local", "siglip", "knowledge_group"}
    for case in one:
        assert two[case]["loss"].item() == pytest.approx(one[case]["loss"].item(), abs=1e-5), case
        assert set(two[case]["grads"]) == set(one[case]["grads"]), case
        assert len(one[case]["grads"]) > 10
        for name, g in one[case]["grads"].items():
            torch.testing.assert_close(two[case]["grads"][name], g, atol=1e-5, rtol=1e-4, msg=f"{case}: {name}")
