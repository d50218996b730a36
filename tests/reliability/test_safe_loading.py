"""Safe loading: weights and arrays never run code from a file unless the caller explicitly trusts it.

A hostile file carries a pickle whose ``__reduce__`` would write a marker file when unpickled; every loader must
refuse it with a clear error and the marker must not appear. A static check keeps the rules true for new code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from medvl.cli.main import app
from medvl.errors import InputError
from medvl.resources import bundled, package_dir


class _Payload:
    """Unpickling this calls ``Path.touch`` on the marker: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def hostile(tmp_path) -> tuple[dict[str, Path], Path]:
    marker = tmp_path / "PWNED"
    payload = {"weight": torch.zeros(2), "evil": _Payload(marker)}
    files = {"pth": tmp_path / "evil.pth", "pkl": tmp_path / "evil.pkl", "bin": tmp_path / "evil.bin"}
    torch.save(payload, files["pth"])  # torch zip format with a pickle inside
    files["pkl"].write_bytes(pickle.dumps(payload))
    torch.save(payload, files["bin"], _use_new_zipfile_serialization=False)  # legacy torch format
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(pickle.dumps(payload))  # a pickle under a safetensors name
    files["safetensors"] = fake
    return files, marker


def _loaders():
    """Every way a weights file enters medvl: the one loader, and the towers that take a ``weights`` path."""
    from medvl.models import create_tower, weights

    return {"weights.load_state_file": weights.load_state_file,
            "timm-tiny weights": lambda path: create_tower("timm-tiny", weights=str(path)),
            "resnet3d-tiny weights": lambda path: create_tower("resnet3d-tiny", weights=path)}


@pytest.mark.parametrize("loader", list(_loaders()))
@pytest.mark.parametrize("kind", ["pth", "pkl", "bin", "safetensors"])
def test_every_weights_loader_refuses_a_hostile_pickle(loader, kind, hostile):
    files, marker = hostile
    with pytest.raises(InputError) as err:
        _loaders()[loader](files[kind])
    assert files[kind].name in str(err.value)
    assert not marker.exists(), "code from the file ran"


def test_trust_flag_is_explicit_and_works_for_own_files(tmp_path):
    from medvl.models.weights import load_state_file

    own = tmp_path / "mine.pkl"
    own.write_bytes(pickle.dumps({"w": torch.ones(3)}))
    with pytest.raises(InputError, match="trust_pickle"):
        load_state_file(own)
    assert torch.equal(load_state_file(own, trust_pickle=True)["w"], torch.ones(3))


def test_safetensors_and_plain_tensor_files_load(tmp_path):
    from medvl.models.weights import load_state_file

    state = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pt")  # tensors only: allowed under weights_only=True
    for name in ("w.safetensors", "w.pt"):
        assert torch.equal(load_state_file(tmp_path / name)["a.weight"], state["a.weight"])


def test_cli_refuses_hostile_weights_and_checkpoints(hostile, tmp_path):
    files, marker = hostile
    runner = CliRunner()
    extract = runner.invoke(app, ["slide", "extract", str(bundled("slide")), "--encoder", "timm", "--model-name",
                                  "test_vit", "--weights", str(files["pth"]), "--out", str(tmp_path / "f"),
                                  "--device", "cpu", "--mpp", "4.0", "--size", "64"])
    assert extract.exit_code != 0 and "evil.pth" in extract.stderr and "Traceback" not in extract.stderr
    assert [line for line in extract.stderr.splitlines() if line.strip()][-1].startswith("error: ")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(files["pkl"].read_bytes())
    (ckpt / "config.json").write_text("{}")
    emb = runner.invoke(app, ["ct", "embed", str(bundled("ct_small")), "--model", str(ckpt), "--out",
                              str(tmp_path / "e.npz"), "--device", "cpu"])
    assert emb.exit_code != 0 and emb.stderr.startswith("error: ") and "Traceback" not in emb.stderr
    assert not marker.exists()
    import h5py

    for h5 in (tmp_path / "f").glob("*.h5"):  # the tiling step's own (complete) output may stay; no features
        with h5py.File(h5) as f:
            assert "features" not in f


def test_arrays_with_objects_are_refused(hostile, tmp_path):
    from medvl.io.embeddings import load_embeddings

    _, marker = hostile
    arr = np.array([_Payload(marker), 1], dtype=object)
    np.save(tmp_path / "evil.npy", arr, allow_pickle=True)
    np.savez(tmp_path / "evil.npz", embeddings=arr)
    for name in ("evil.npy", "evil.npz"):
        with pytest.raises(InputError) as err:
            load_embeddings(tmp_path / name)
        assert name in str(err.value)
    assert not marker.exists()


#: the rules, checked over the whole package: (pattern, what is allowed)
_RULES = [
    (re.compile(r"torch\.load\((?![^)]*weights_only)"), "torch.load without weights_only"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\bpickle\.loads?\(|\bjoblib\.load\(|\bdill\.load"), "raw unpickling"),
]


def test_no_unsafe_loading_in_the_package():
    """Only :func:`medvl.models.weights._trusted_pickle` (behind ``trust_pickle=True``) may unpickle."""
    root = package_dir().parent
    hits = []
    for path in package_dir().rglob("*.py"):  # the library and the Streamlit pages (medvl/apps/streamlit)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, what in _RULES:
                if pattern.search(line) and "explicit trust_pickle=True" not in line:
                    hits.append(f"{path.relative_to(root)}:{number}: {what}")
    trusted = [h for h in hits if "weights_only" in h and "weights.py" in h]  # weights_only=not trust_pickle
    assert [h for h in hits if h not in trusted] == []


def test_trust_flag_on_the_cli_loads_own_pickled_weights(tmp_path):
    """Legacy torch weights that need full unpickling load only with --trust-pickle (and then really are used)."""
    import torch
    from typer.testing import CliRunner

    from medvl.cli.main import app
    from medvl.io.features import read_features
    from medvl.models import create_tower
    from medvl.resources import bundled

    tower = create_tower("timm", model_name="test_vit")
    weights = tmp_path / "own.pth"
    # a plain (non-zip) pickle that torch's weights_only loader refuses
    torch.save({"model": tower.model.state_dict(), "note": _Plain()}, weights, _use_new_zipfile_serialization=False)
    args = ["slide", "extract", str(bundled("slide")), "--encoder", "timm", "--model-name", "test_vit", "--weights",
            str(weights), "--device", "cpu", "--mpp", "4.0", "--size", "64"]
    runner = CliRunner()
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code != 0 and "trust" in refused.stderr
    trusted = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--trust-pickle"])
    assert trusted.exit_code == 0, trusted.stderr
    features, _, _ = read_features(next((tmp_path / "b").glob("*.h5")))
    assert features.shape[1] == tower.embed_dim


class _Plain:
    """An ordinary object: harmless, but only full unpickling can restore it."""
