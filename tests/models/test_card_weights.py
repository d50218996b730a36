"""Random weights in each card's published layout load through ``check`` and the extraction path, and give the same
embedding as the source library's own model built the same way (reduced sizes, same key layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medvl.errors import InputError
from medvl.models.card_weights import check_weights
from medvl.models.catalogue import get_card, list_cards
from medvl.models.published import load_card_encoder
from medvl.pathology.extract import EncoderSpec, load_tile_encoder
from tests.models.card_references import reduced_card_dict, reference_for, save

#: slide encoders have no source library that runs here (Prov-GigaPath needs flash-attn; TITAN and PRISM are hub
#: remote code): their published layouts are tested in tests/pathology/test_slide_embed.py
CARDS = [c for c in list_cards() if c.checkable and c.modality != "slide"]


def _published(card, tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "weights"
    folder.mkdir()
    path, forward = reference_for(card)(card, {**card.builder.kwargs, **card.reduced.kwargs}, folder)
    return folder, path, forward


def _tiles(px: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, px, px, 3), dtype=np.uint8)


@pytest.mark.parametrize("card", CARDS, ids=lambda c: c.name)
def test_published_layout_matches_source_model(card, tmp_path, monkeypatch):
    folder, path, forward = _published(card, tmp_path)
    report = check_weights(card, folder, kwargs=card.reduced.kwargs)
    assert report.ok, report.problem()
    assert report.matched == report.expected
    if card.tile is not None:
        cards = tmp_path / "cards"
        cards.mkdir()
        (cards / f"{card.name}-reduced.json").write_text(json.dumps(reduced_card_dict(card)))
        monkeypatch.setenv("MEDVL_CARDS", str(cards))
        encoder = load_tile_encoder(EncoderSpec(name=f"{card.name}-reduced", weights=str(folder)))
        x = encoder.preprocess(_tiles(encoder.transform.size), torch.device("cpu"))
        with torch.inference_mode():
            got, want = encoder.encode(x), forward(x)
        assert encoder.name.startswith(f"{card.name}-reduced@{path.name}:")
    else:
        encoder = load_card_encoder(card, folder, reduced=True)
        x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            got, want = encoder.encode(x), forward(x)
    assert got.shape == (x.shape[0], card.reduced.dim or card.embedding.dim)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


def test_resize_then_centre_crop_matches_torchvision():
    from torchvision.transforms import v2

    from medvl.models.transforms import ImageTransformConfig, image_transform

    card = get_card("prov-gigapath")
    transform = ImageTransformConfig.from_data_config(card.tile.data_config())  # what extraction applies
    tiles = _tiles(300, n=1)
    got = image_transform(tiles, transform, torch.device("cpu"))
    ref = v2.Compose([v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(224),
                      v2.ToDtype(torch.float32, scale=True), v2.Normalize(card.tile.mean, card.tile.std)])
    want = ref(torch.from_numpy(tiles[0]).permute(2, 0, 1))[None]
    assert got.shape == (1, 3, 224, 224)
    assert (got - want).abs().mean() < 0.02  # same resampling; torchvision rounds through uint8 less often


# ------------------------------------------------------------------------------------------------ bad weights
@pytest.fixture
def uni_weights(tmp_path):
    card = get_card("uni")
    folder, path, _ = _published(card, tmp_path)
    return card, folder, path


def test_extra_head_is_named(uni_weights):
    card, folder, path = uni_weights
    state = torch.load(path, weights_only=True)
    state["head.weight"], state["head.bias"] = torch.zeros(5, 64), torch.zeros(5)
    save(state, path)
    report = check_weights(card, folder, kwargs=card.reduced.kwargs)
    assert report.unexpected == ["head.bias", "head.weight"]
    assert "look like a classification head" in report.problem()
    with pytest.raises(InputError, match="weights do not match card 'uni'.*2 unexpected"):
        load_card_encoder(card, folder, reduced=True)


def test_wrong_model_reports_mis_shaped_and_missing_keys(uni_weights):
    _, folder, _ = uni_weights
    virchow2 = get_card("virchow2")  # 4 registers, SwiGLU MLP, wider
    report = check_weights(virchow2, folder / "pytorch_model.bin", kwargs=virchow2.reduced.kwargs)
    assert not report.ok and report.mis_shaped and "reg_token" in report.missing
    assert "mis-shaped" in report.problem() and "missing" in report.problem()


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_truncated_file_is_a_clear_error(uni_weights, suffix):
    card, folder, path = uni_weights
    state = torch.load(path, weights_only=True)
    target = save(state, folder / f"model{suffix}")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        check_weights(card, target, kwargs=card.reduced.kwargs)


def test_pickle_needing_full_unpickling_is_refused(uni_weights, tmp_path):
    import pickle

    card, _, path = uni_weights
    odd = tmp_path / "odd.bin"
    with open(odd, "wb") as fh:
        pickle.dump({"pos_embed": np.zeros(3)}, fh)  # a plain pickle, not torch's safe format
    with pytest.raises(InputError, match="refused"):
        check_weights(card, odd, kwargs=card.reduced.kwargs)


def test_folder_without_the_card_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="expected one of pytorch_model.bin, model.safetensors; found notes.txt"):
        check_weights(get_card("uni"), tmp_path)
