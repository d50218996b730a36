"""Provenance by content: the record, the one comparison rule, and a property test of the fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medvl.errors import InputError
from medvl.hashing import config_hash
from medvl.log import collected_warnings
from medvl.models.transforms import ImageTransformConfig
from medvl.pathology.pipeline import SlideJob, tiling_record
from medvl.pathology.tiling import TileConfig
from medvl.pathology.tissue import TissueConfig
from medvl.provenance import (
    ModelPrint,
    Provenance,
    differences,
    input_print,
    parse_provenance,
    require_match,
    weights_hash,
)

PRINT = ModelPrint(encoder="ckpt", weights="a" * 40, config="c" * 24, modality="image")


def _record(**changes) -> Provenance:
    base = Provenance(model=PRINT, preprocessing=ImageTransformConfig().to_dict(),
                      tiling=tiling_record(TileConfig(), TissueConfig(), SlideJob("s", "s.svs")), input="i" * 40)
    return base.replace(**changes)


def test_the_record_round_trips_through_json_and_a_damaged_one_is_no_record():
    rec = _record()
    assert parse_provenance(rec.to_json()) == rec and parse_provenance(rec.to_json().encode()) == rec
    assert parse_provenance(None) is None and parse_provenance("{not json") is None
    assert parse_provenance('{"model": {"encoder": 3}}') is None  # wrong types: never trusted


def test_differences_name_what_differs():
    rec = _record()
    assert differences(rec, _record()) == []
    retrained = _record(model=PRINT.replace(weights="b" * 40))
    assert differences(retrained, rec) == [
        f"they were made by 'ckpt' (id {retrained.model.identity()[:10]}), not by 'ckpt' (id "
        f"{PRINT.identity()[:10]}): the weights differ"]
    other_grid = _record(tiling=tiling_record(TileConfig(mpp=2.0), TissueConfig(), SlideJob("s", "s.svs")))
    assert differences(other_grid, rec) == ["tiling differs: tiles.mpp 2.0 (wanted 0.5)"]
    gray = _record(preprocessing=ImageTransformConfig(size=32, channels="grayscale", mean=(0.5,),
                                                      std=(0.25,)).to_dict())
    assert differences(gray, rec)[0].startswith("preprocessing differs: size 32 (wanted 224), channels \"grayscale\"")
    assert differences(_record(input="x"), rec) == ["its input changed since it was made"]
    projected = _record(model=PRINT.replace(projected=True))
    assert "projected joint-space vectors" in differences(projected, rec)[0]
    # only the parts the consumer expects are compared
    assert differences(other_grid, Provenance(model=PRINT)) == []
    assert differences(None, rec) == ["it carries no provenance record"]


def test_require_match_refuses_or_trusts_explicitly(tmp_path):
    rec = _record()
    assert require_match(rec, rec, tmp_path / "f.h5") == []
    with pytest.raises(InputError, match="f.h5: does not match: .*weights differ .*redo it"):
        require_match(_record(model=PRINT.replace(weights="b")), rec, tmp_path / "f.h5", redo="redo it")
    with pytest.raises(InputError, match="carries no provenance record.*--trust-provenance"):
        require_match(None, rec, tmp_path / "old.h5")
    (tmp_path / "old.h5").write_bytes(b"old")
    notes = require_match(None, rec, tmp_path / "old.h5", trust=True)
    assert notes == [f"vectors without a provenance record used (--trust-provenance): input "
                     f"{input_print(tmp_path / 'old.h5')}"]  # recorded in outputs: by content, never by name
    assert len(collected_warnings()) == 1 and "old.h5" in collected_warnings()[0]  # the user is told the name


def test_weights_and_inputs_are_fingerprinted_by_content(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"\x00" * 1000)
    b.write_bytes(b"\x00" * 1000)
    assert weights_hash(a) == weights_hash(b) == input_print(a)  # same bytes, same hash, wherever the file is
    b.write_bytes(b"\x00" * 999 + b"\x01")
    assert weights_hash(b) != weights_hash(a)
    with pytest.raises(InputError, match="weights file not found"):
        weights_hash(tmp_path / "missing.safetensors")
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"one")
    before = input_print(folder)
    (folder / "2.dcm").write_bytes(b"two")
    assert input_print(folder) != before


def test_a_big_input_is_fingerprinted_from_samples(tmp_path, monkeypatch):
    import medvl.provenance as prov

    monkeypatch.setattr(prov, "SAMPLED_ABOVE", 1000)
    monkeypatch.setattr(prov, "_SAMPLE", 100)
    data = np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8)
    (tmp_path / "w.svs").write_bytes(data.tobytes())
    first = input_print(tmp_path / "w.svs")
    assert first.startswith("sampled:")
    data[-1] ^= 1  # the last bytes are sampled
    (tmp_path / "w2.svs").write_bytes(data.tobytes())
    assert input_print(tmp_path / "w2.svs") != first


# ------------------------------------------------------------------------------------------------ property
weights = st.binary(min_size=1, max_size=64)
tiles = st.builds(TileConfig, mpp=st.sampled_from([0.25, 0.5, 1.0, 2.0]), size=st.sampled_from([64, 224, 256]),
                  overlap=st.sampled_from([0, 16]), min_tissue=st.sampled_from([0.0, 0.25, 0.5]))
transforms = st.builds(ImageTransformConfig, size=st.sampled_from([32, 160, 224]),
                       interpolation=st.sampled_from(["bilinear", "bicubic"]), antialias=st.booleans())


def _made(weight_bytes: bytes, tile: TileConfig, transform: ImageTransformConfig, tmp_path) -> Provenance:
    path = tmp_path / f"w-{config_hash(weight_bytes.hex())}.safetensors"
    path.write_bytes(weight_bytes)
    printed = ModelPrint(encoder="m", weights=weights_hash(path), config="cfg")
    return Provenance(model=printed, preprocessing=transform.to_dict(),
                      tiling=tiling_record(tile, TissueConfig(), SlideJob("s", "s.svs")))


@settings(deadline=None)  # file writes and hashing: timing varies on a shared machine, the property does not
@given(w1=weights, w2=weights, t1=tiles, t2=tiles, p1=transforms, p2=transforms)
def test_any_change_to_weights_tiling_or_preprocessing_changes_the_fingerprint(tmp_path_factory, w1, w2, t1, t2,
                                                                               p1, p2):
    tmp = tmp_path_factory.mktemp("w", numbered=True)
    a, b = _made(w1, t1, p1, tmp), _made(w2, t2, p2, tmp)
    same_inputs = (w1, t1.to_dict(), p1.to_dict()) == (w2, t2.to_dict(), p2.to_dict())
    assert (a.fingerprint() == b.fingerprint()) is same_inputs
    assert (differences(a, b) == []) is same_inputs
    assert _made(w1, t1, p1, tmp).fingerprint() == a.fingerprint()  # identical inputs keep it
