"""Offline bundles: pack checks and checksums everything, unpack verifies and installs atomically, bad bundles fail
with one clear error and leave nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from medvl.errors import ConfigError, InputError
from medvl.models.store import ModelStore, pack_bundle, unpack_bundle
from tests.models.card_references import user_card


@pytest.fixture
def packed(tmp_path):
    card, weights, _ = user_card(tmp_path)
    (weights / "LICENSE").write_text("Licence text of the lab model\n")
    rec = pack_bundle(card, weights, tmp_path / "lab-uni.tar")
    return card, weights, tmp_path / "lab-uni.tar", rec


def _members(bundle):
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_pack_writes_weights_card_checksums_and_licence(packed):
    card, weights, bundle, rec = packed
    members = _members(bundle)
    assert set(members) == {"bundle.json", "SHA256SUMS", "card.json", "LICENSE.txt", "weights/pytorch_model.bin"}
    assert members["LICENSE.txt"] == b"Licence text of the lab model\n" and rec["licence_from"] == "LICENSE"
    assert members["weights/pytorch_model.bin"] == (weights / "pytorch_model.bin").read_bytes()
    for line in members["SHA256SUMS"].decode().splitlines():  # sha256sum -c format
        digest, name = line.split("  ")
        assert hashlib.sha256(members[name]).hexdigest() == digest
    assert json.loads(members["card.json"])["name"] == card.name


def test_unpack_installs_verified_and_resolves_by_name(packed, tmp_path, monkeypatch):
    card, _, bundle, _ = packed
    store = ModelStore(tmp_path / "store")
    rec = unpack_bundle(bundle, store)
    assert rec["verified"] and store.installed(card.name) and store.verify(card.name) == []
    assert store.card(card.name) == card
    assert [p.name for p in store.root.iterdir()] == [card.name]  # no temporaries left
    monkeypatch.setenv("MEDVL_MODELS", str(store.root))
    from medvl.models.published import card_weights_label, load_card_encoder

    enc = load_card_encoder(card.name)  # the card comes from the store: no card folder needed
    assert enc.embed_dim == card.embedding.dim
    assert card_weights_label(card).startswith("lab-uni@sha256:")
    with pytest.raises(ConfigError, match="already installed"):
        unpack_bundle(bundle, store)
    assert unpack_bundle(bundle, store, force=True)["verified"]


def test_card_licence_statement_when_no_licence_file(tmp_path):
    card, weights, _ = user_card(tmp_path)
    rec = pack_bundle(card, weights, tmp_path / "b.tar")
    text = _members(tmp_path / "b.tar")["LICENSE.txt"].decode()
    assert rec["licence_from"] == "card" and "CC-BY-NC-ND-4.0" in text and "Chen RJ" in text


def _rewrite(bundle, out, change):
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            data = change(m.name, src.extractfile(m).read())
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def test_checksum_failure_installs_nothing(packed, tmp_path):
    _, _, bundle, _ = packed
    bad = tmp_path / "bad.tar"

    def flip(name, data):
        return data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:] if name.startswith("weights/") else data

    _rewrite(bundle, bad, flip)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InputError, match="checksum of 'weights/pytorch_model.bin' does not match"):
        unpack_bundle(bad, store)
    assert not store.installed("lab-uni") and list(store.root.iterdir()) == []


def test_member_outside_the_folder_is_refused(packed, tmp_path):
    _, _, bundle, _ = packed
    bad = tmp_path / "evil.tar"

    def escape(name, data):
        if name != "bundle.json":
            return data
        manifest = json.loads(data)
        manifest["files"]["../evil.txt"] = {"sha256": "0" * 64, "size": 1}
        return json.dumps(manifest).encode()

    _rewrite(bundle, bad, escape)
    with pytest.raises(InputError, match="points outside"):
        unpack_bundle(bad, ModelStore(tmp_path / "store"))
    assert not (tmp_path / "evil.txt").exists()


def test_not_a_bundle(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not a tar at all")
    with pytest.raises(InputError, match="not a medvl model bundle"):
        unpack_bundle(tmp_path / "x.tar", ModelStore(tmp_path / "store"))


def test_pack_refuses_mismatched_weights_and_writes_nothing(tmp_path):
    card, weights, _ = user_card(tmp_path)
    import torch

    state = torch.load(weights / "pytorch_model.bin", weights_only=True)
    del state["norm.weight"]
    torch.save(state, weights / "pytorch_model.bin")
    with pytest.raises(InputError, match="1 missing \\(e.g. norm.weight\\)"):
        pack_bundle(card, weights, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists() and not list(tmp_path.glob(".out.tar*"))


def test_encoder_label_changes_with_weights_and_card(tmp_path):
    from medvl.models.published import card_weights_label

    card, weights, _ = user_card(tmp_path)
    first = card_weights_label(card, weights)
    assert first.startswith("lab-uni@pytorch_model.bin:")
    import torch

    state = torch.load(weights / "pytorch_model.bin", weights_only=True)
    state["norm.weight"] += 1
    torch.save(state, weights / "pytorch_model.bin")
    second = card_weights_label(card, weights)
    assert second != first
    edited = card.replace(tile=card.tile.replace(mean=(0.5, 0.5, 0.5)))
    assert card_weights_label(edited, weights).split("/card:")[1] != second.split("/card:")[1]
