"""Registry forward over every tiny tower, the multi-modal model, checkpoints and safe weight loading."""

from __future__ import annotations

import pytest
import torch

from medvl.errors import ConfigError, InputError
from medvl.models import create_model, create_tower, get_tower_entry, list_models, list_towers
from medvl.models.weights import load_state_file


@pytest.mark.parametrize("name", list_towers(tiny=True))
def test_every_tiny_tower_forward(name):
    entry = get_tower_entry(name)
    torch.manual_seed(0)
    tower = create_tower(name).eval()
    assert entry.example_input is not None, f"{name} has no example input"
    with torch.no_grad():
        out = tower.encode(entry.example_input(tower))
    assert out.dim() == 2 and out.shape[1] == tower.embed_dim
    assert torch.isfinite(out).all()


def test_every_tower_kind_has_a_tiny_variant():
    kinds = {get_tower_entry(n).modality for n in list_towers(tiny=True)}
    assert {"text", "image", "bag", "tabular"} <= kinds


def test_list_models_and_unknown_name():
    assert {"tiny-clip", "tiny-multimodal", "breastmnist-demo"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model 'nope'.*tiny-clip"):
        create_model("nope")


def test_multimodal_encoders_are_normalised_and_project_matches():
    model = create_model("tiny-multimodal", random_weights=True).eval()
    text = model.encode_text(["breast cancer", "renal cell carcinoma", "benign cyst"])
    rows = torch.randn(4, 4)
    tab = model.encode_tabular(rows)
    bag = model.encode_bag({"features": torch.randn(2, 7, 16), "coords": torch.randint(0, 1000, (2, 7, 2))})
    for emb, n in ((text, 3), (tab, 4), (bag, 2)):
        assert emb.shape == (n, 16)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(n))
    raw = model.towers["tabular"].encode(rows)
    torch.testing.assert_close(model.project("tabular", raw), tab)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) > 100: clamped
    assert model.scale().item() == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="no 'image' tower"):
        model.encode_image(torch.zeros(1, 3, 8, 8))


def test_bag_padding_does_not_change_the_embedding():
    model = create_model("tiny-multimodal", random_weights=True).eval()
    feats = torch.randn(1, 5, 16)
    padded = torch.cat([feats, torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    a = model.encode_bag({"features": feats})
    b = model.encode_bag({"features": padded, "mask": mask})
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_checkpoint_round_trip(tmp_path):
    model = create_model("tiny-clip", random_weights=True).eval()
    folder = model.save(tmp_path / "ckpt")
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "medvl_version", "tokenizer.json"} <= names
    restored = create_model(folder)
    texts = ["invasive ductal carcinoma", "fibroadenoma of the breast"]
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(restored.encode_text(texts), model.encode_text(texts))
    torch.testing.assert_close(restored.encode_image(images), model.encode_image(images))
    assert not list(tmp_path.glob(".*tmp-medvl"))


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a medvl checkpoint"):
        create_model(tmp_path / "empty")


class Payload:
    """An arbitrary object: loading it needs full unpickling."""


def test_safe_weight_loading(tmp_path):
    state = {"w": torch.arange(4.0)}
    torch.save(state, tmp_path / "ok.pt")
    assert torch.equal(load_state_file(tmp_path / "ok.pt")["w"], state["w"])

    torch.save({"w": torch.zeros(1), "obj": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights_only=True failed"):
        load_state_file(tmp_path / "evil.pt")
    assert "obj" in load_state_file(tmp_path / "evil.pt", trust_pickle=True)
    import pickle

    (tmp_path / "w.pkl").write_bytes(pickle.dumps(state))
    with pytest.raises(InputError, match="pickle-based weights are refused"):
        load_state_file(tmp_path / "w.pkl")
    assert torch.equal(load_state_file(tmp_path / "w.pkl", trust_pickle=True)["w"], state["w"])


def test_binding_a_new_modality_trains_only_its_tower():
    """ULIP-style: tabular rows are bound to frozen text embeddings; the text side does not move."""
    from medvl.losses.contrastive import infonce_loss

    torch.manual_seed(0)
    model = create_model("tiny-multimodal", random_weights=True)
    trainable = model.freeze_except("towers.tabular", "projections.tabular")
    assert trainable and all(n.startswith(("towers.tabular", "projections.tabular")) for n in trainable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts = ["breast cancer", "renal cell carcinoma", "benign cyst", "lung tumor"]
    rows = torch.randn(4, 4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.eval()
    with torch.no_grad():
        target = model.encode_text(texts)
    losses = []
    for _ in range(30):
        loss = infonce_loss(model.encode_tabular(rows), target, 10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5
    after = model.state_dict()
    bound = ("towers.tabular", "projections.tabular")
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith(bound))
