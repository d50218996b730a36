"""Bag datasets (feature folders with outcome tables, BreastMNIST patch bags) and the event-balanced sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medvl.errors import ConfigError, InputError
from medvl.io.features import FeatureStore, TileTable
from medvl.train.data.bags import BagFolder, BagFolderOptions, BreastMNISTBagOptions, BreastMNISTBags, pad_bags
from medvl.train.survival_sampler import EventBalancedSampler


def _write_bags(folder, sizes, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in sizes.items():
        coords = np.stack([np.arange(n) % 5, np.arange(n) // 5], 1) * 256
        FeatureStore(folder / f"{name}.h5").write(TileTable(coords, {"encoder": "test", "tile_px": 256},
                                                            rng.standard_normal((n, dim)).astype(np.float32)))


def test_bag_folder_joins_a_survival_table(tmp_path):
    _write_bags(tmp_path / "f", {"s1": 7, "s2": 3, "s3": 12})
    table = tmp_path / "t.csv"
    pd.DataFrame({"slide_id": ["s1", "s2", "s3"], "months": [5.0, 12.0, 3.0], "censorship": [0, 1, 0],
                  "split": ["train", "train", "test"]}).to_csv(table, index=False)
    ds = BagFolder(BagFolderOptions(features=str(tmp_path / "f"), table=str(table), time="months",
                                    event="censorship", event_is_censoring=True, split="train", max_items=5))
    assert ds.ids == ["s1", "s2"] and ds.dim == 8 and ds.event.tolist() == [True, False]
    item = ds.item(0, torch.Generator().manual_seed(0))
    assert item["bag"]["features"].shape == (5, 8) and item["bag"]["coords"].shape == (5, 2)
    assert item["time"].item() == 5.0 and item["event"] is True
    batch = pad_bags([ds.item(i, torch.Generator().manual_seed(i))["bag"] for i in range(2)])
    assert batch["features"].shape == (2, 5, 8) and batch["mask"].sum(1).tolist() == [5, 3]


def test_bag_folder_bad_inputs(tmp_path):
    _write_bags(tmp_path / "f", {"a": 4, "b": 4})
    _write_bags(tmp_path / "mixed", {"a": 4}, dim=8)
    _write_bags(tmp_path / "mixed", {"b": 4}, dim=6)
    with pytest.raises(InputError, match="mixed dimension"):
        BagFolder(BagFolderOptions(features=str(tmp_path / "mixed")))
    table = tmp_path / "t.csv"
    pd.DataFrame({"case_id": ["a", "zz", "yy"], "t": [1, 2, 3], "e": [1, 0, 1]}).to_csv(table, index=False)
    with pytest.raises(InputError, match="2 of 3 id.*no feature file"):
        BagFolder(BagFolderOptions(features=str(tmp_path / "f"), table=str(table), time="t", event="e"))
    with pytest.raises(ConfigError, match="both 'time' and 'event'"):
        BagFolderOptions(features="x", time="t")


def test_breastmnist_patch_bags_rebuild_the_image():
    ds = BreastMNISTBags(BreastMNISTBagOptions(split="test", patch=4, limit=3))
    item = ds.item(1, torch.Generator())
    feats, coords = item["bag"]["features"], item["bag"]["coords"]
    assert feats.shape == (49, 16) and ds.dim == 16
    with np.load(__import__("medvl.resources", fromlist=["bundled"]).bundled("breastmnist")) as d:
        image = d["test_images"][1]
    k = 10  # patch 10 sits at x = 3 * 4, y = 1 * 4
    x, y = coords[k].int().tolist()
    assert np.allclose(feats[k].numpy().reshape(4, 4) * 255, image[y:y + 4, x:x + 4])


def test_event_balanced_sampler_puts_events_in_every_batch():
    events = [i % 10 == 0 for i in range(100)]  # 10 % events
    s = EventBalancedSampler(events, batch_size=8, seed=3, event_fraction=0.25)
    batches = s.batches(0)
    assert len(batches) == 12 and all(len(b) == 8 and len(set(b)) == 8 for b in batches)
    assert all(sum(events[i] for i in b) == 2 for b in batches)
    assert s.batches(0) == batches and s.batches(1) != batches
    with pytest.raises(ConfigError, match="no events"):
        EventBalancedSampler([False] * 10, 4)
