"""Volume towers in the registry: one forward test over every tiny variant, weights, input checks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from medvl.errors import InputError
from medvl.models import create_tower, get_tower_entry, list_towers


def test_registry_lists_the_volume_towers():
    names = set(list_towers("volume"))
    assert {"resnet3d", "vit3d", "slices2.5d", "resnet3d-tiny", "vit3d-tiny", "slices2.5d-tiny"} <= names


@pytest.mark.parametrize("name", ["resnet3d-tiny", "vit3d-tiny", "slices2.5d-tiny"])
def test_tiny_towers_encode(name):
    torch.manual_seed(0)
    tower = create_tower(name).eval()
    batch = get_tower_entry(name).example_input(tower)
    with torch.no_grad():
        emb = tower.encode(batch)
        tokens = tower.encode_tokens({"image": batch})
    assert emb.shape == (2, tower.embed_dim) and torch.isfinite(emb).all()
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == tower.embed_dim
    assert not torch.allclose(emb[0], emb[1])  # different volumes, different embeddings


def test_resnet_depth_and_slice_pooling():
    assert create_tower("resnet3d", depth=10, widths=(8, 8, 16, 16)).embed_dim == 16
    assert create_tower("resnet3d", depth=50, widths=(8, 8, 16, 16)).embed_dim == 64
    tower = create_tower("slices2.5d-tiny", pooling="max", slice_stride=2).eval()
    with torch.no_grad():
        assert tower.encode_tokens(torch.rand(1, 1, 8, 32, 32)).shape[1] == 4


def test_weights_round_trip_and_mismatch(tmp_path):
    a = create_tower("resnet3d-tiny").eval()
    save_file(a.net.state_dict(), tmp_path / "w.safetensors")
    b = create_tower("resnet3d-tiny", weights=tmp_path / "w.safetensors").eval()
    x = torch.rand(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a.encode(x), b.encode(x))
    torch.save(create_tower("vit3d-tiny").net.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(InputError, match="weights do not fit"):
        create_tower("resnet3d-tiny", weights=tmp_path / "vit.pt")


def test_wrong_inputs_are_explained():
    vit = create_tower("vit3d-tiny")
    with pytest.raises(ValueError, match=r"takes volumes of \(16, 32, 32\)"):
        vit.encode(torch.rand(1, 1, 8, 32, 32))
    with pytest.raises(ValueError, match=r"Tensor\[B, 1, D, H, W\]"):
        create_tower("resnet3d-tiny").encode(torch.rand(1, 16, 32, 32))
