"""FeatureStore: medvl layout round trip, atomic writes, and reading CLAM/TRIDENT-style files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.features import FeatureStore, TileTable, read_features


def test_round_trip_and_layout(tmp_path):
    coords = np.array([[0, 0], [224, 0], [0, 224]])
    feats = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    attrs = {"mpp": 0.5, "tile_px": 224, "patch_size_level0": 448, "level": 1, "encoder": "timm-tiny",
             "embed_dim": 8, "projected": False, "medvl_version": "0.1.0", "slide_path": "x.svs",
             "mpp_source": "header"}
    path = FeatureStore(tmp_path / "s.h5").write(TileTable(coords, attrs, feats, np.ones(3)))
    f, c, a = read_features(path)
    np.testing.assert_array_equal(c, coords)
    np.testing.assert_allclose(f, feats)
    assert a["encoder"] == "timm-tiny" and a["patch_size_level0"] == 448 and a["projected"] == 0
    with h5py.File(path) as h:  # CLAM/TRIDENT readers find their names on coords
        assert h["coords"].attrs["patch_size"] == 224 and h["coords"].attrs["patch_level"] == 1
        assert h["coords"].attrs["patch_size_level0"] == 448
    assert FeatureStore(path).has_features("timm-tiny") and not FeatureStore(path).has_features("other")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        FeatureStore(tmp_path / "s.h5").write(TileTable(np.zeros((3, 2)), {}, np.zeros((2, 4))))
    assert list(tmp_path.iterdir()) == []


def test_reads_clam_file(tmp_path):
    path = tmp_path / "clam.h5"
    with h5py.File(path, "w") as h:
        h.create_dataset("features", data=np.ones((1, 5, 16), np.float32))  # CLAM sometimes keeps a batch axis
        ds = h.create_dataset("coords", data=np.arange(10).reshape(5, 2))
        ds.attrs["patch_size"] = 256
        ds.attrs["patch_level"] = 0
        ds.attrs["downsample"] = np.array([2.0, 2.0])
    f, c, a = read_features(path)
    assert f.shape == (5, 16) and c.shape == (5, 2)
    assert a["tile_px"] == 256 and a["level"] == 0 and a["patch_size_level0"] == 512


def test_reads_trident_file(tmp_path):
    path = tmp_path / "trident.h5"
    with h5py.File(path, "w") as h:
        h.create_dataset("features", data=np.ones((4, 32), np.float32))
        ds = h.create_dataset("coords", data=np.zeros((4, 2), np.int64))
        ds.attrs.update({"patch_size": 512, "patch_size_level0": 1024, "target_magnification": 20})
    f, _, a = read_features(path)
    assert f.shape == (4, 32) and a["patch_size_level0"] == 1024 and a["tile_px"] == 512


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_features(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_features(tmp_path / "junk.h5")
    FeatureStore(tmp_path / "tiles.h5").write(TileTable(np.zeros((2, 2)), {"mpp": 0.5}))
    with pytest.raises(InputError, match="no features yet"):
        read_features(tmp_path / "tiles.h5")
