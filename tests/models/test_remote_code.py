"""Models published with their own Python code: packed with that code, run only when the user trusts it."""

from __future__ import annotations

import json

import pytest
import torch

from medvl.errors import ConfigError
from medvl.models.card import ModelCard
from medvl.models.catalogue import get_card
from medvl.models.published import load_card_encoder
from medvl.models.store import ModelStore, pack_bundle, unpack_bundle

REMOTE_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class LabConfig(PretrainedConfig):
    model_type = "labnet"

    def __init__(self, dim=8, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim


class LabNet(PreTrainedModel):
    config_class = LabConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(3, config.dim)
        self.post_init()

    def embed(self, x):
        return self.proj(x.mean(dim=(2, 3)))
'''


@pytest.fixture
def remote_model(tmp_path, monkeypatch):
    """A hub-style folder with remote code (config.json auto_map + modeling file + safetensors) and its card."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    folder = tmp_path / "labnet"
    folder.mkdir()
    (folder / "modeling_labnet.py").write_text(REMOTE_CODE)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "labnet", "dim": 8, "architectures": ["LabNet"],
        "auto_map": {"AutoConfig": "modeling_labnet.LabConfig", "AutoModel": "modeling_labnet.LabNet"}}))
    weight, bias = torch.randn(8, 3), torch.randn(8)
    save_file({"proj.weight": weight, "proj.bias": bias}, str(folder / "model.safetensors"))
    data = get_card("titan").to_dict() | {"name": "labnet", "modality": "tile", "slide": None}
    data["tile"] = get_card("uni").tile.to_dict() | {"input_px": 16, "tile_px": 16}
    data["builder"] = {"name": "hf-remote", "kwargs": {"encode": "embed"}}
    data["embedding"] = {"dim": 8, "output": "pooled"}
    return ModelCard.from_dict(data), folder, (weight, bias)


def test_bundle_carries_the_code_and_runs_it_only_when_trusted(remote_model, tmp_path):
    card, folder, (weight, bias) = remote_model
    rec = pack_bundle(card, folder, tmp_path / "labnet.tar")
    assert not rec["checked"] and "not checked key by key" in rec["warnings"][0]
    assert {"weights/model.safetensors", "weights/config.json", "weights/modeling_labnet.py"} <= set(rec["files"])
    store = ModelStore(tmp_path / "store")
    unpack_bundle(tmp_path / "labnet.tar", store)
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        load_card_encoder(card.name, store=store.root)
    encoder = load_card_encoder(card.name, store=store.root, trust_remote_code=True)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        want = x.mean(dim=(2, 3)) @ weight.T + bias
        assert torch.allclose(encoder.encode(x), want, atol=1e-6)
