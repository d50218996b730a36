"""LV-MAE parts: block and random masks on a tile grid, visible-item packing, decoder and loss."""

from __future__ import annotations

import pytest
import torch

from medvl.errors import ConfigError
from medvl.models.bag import BagConfig, BagTower
from medvl.models.lvmae import (
    MaskConfig,
    MaskedBagDecoder,
    grid_cells,
    mask_bag,
    masked_reconstruction_loss,
    visible_items,
)


def _grid(side=10, step=256):
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], 1) * step + 1000


def test_masks_hide_the_requested_fraction_reproducibly():
    coords = _grid()
    for mode in ("block", "random"):
        cfg = MaskConfig(ratio=0.75, mode=mode, block=3)
        m1 = mask_bag(coords, 100, cfg, torch.Generator().manual_seed(0))
        m2 = mask_bag(coords, 100, cfg, torch.Generator().manual_seed(0))
        assert int(m1.sum()) == 75 and torch.equal(m1, m2)
    assert grid_cells(coords).max().item() == 9


def test_block_masks_are_spatially_clustered():
    """Under block masking a masked tile's 4-neighbours are mostly masked too; at random about the ratio."""
    coords = _grid(16)
    cells = grid_cells(coords)
    index = {tuple(c.tolist()): i for i, c in enumerate(cells)}

    def neighbour_agreement(mask):
        same = total = 0
        for i, (x, y) in enumerate(cells.tolist()):
            for dx, dy in ((1, 0), (0, 1)):
                j = index.get((x + dx, y + dy))
                if j is not None and mask[i]:
                    same += bool(mask[j])
                    total += 1
        return same / total

    g = torch.Generator().manual_seed(1)
    block = neighbour_agreement(mask_bag(coords, 256, MaskConfig(ratio=0.5, mode="block", block=4), g))
    rand = neighbour_agreement(mask_bag(coords, 256, MaskConfig(ratio=0.5, mode="random"), g))
    assert block > 0.75 and rand < 0.65


def test_one_dimensional_blocks_are_runs_of_slices():
    coords = torch.arange(40)[:, None] * 3.0  # slice positions in mm
    m = mask_bag(coords, 40, MaskConfig(ratio=0.5, mode="block", block=5), torch.Generator().manual_seed(2))
    runs = (m[1:] != m[:-1]).sum().item()
    assert int(m.sum()) == 20 and runs <= 12


def test_visible_items_pack_and_decoder_rebuilds_shapes():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 6, 8, generator=g)
    coords = torch.randint(0, 2000, (2, 6, 2), generator=g)
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    masked = torch.tensor([[True, False, True, False, True, True], [False, True, True, False, False, False]])
    fv, cv, vmask, index = visible_items(feats, coords, real, masked)
    assert vmask.sum(1).tolist() == [2, 2] and index[0, :2].tolist() == [1, 3] and index[1, :2].tolist() == [0, 3]
    assert torch.equal(fv[0, 1], feats[0, 3]) and torch.equal(cv[1, 1], coords[1, 3])
    tower = BagTower(BagConfig(in_dim=8, hidden=16, layers=1, heads=2))
    tokens, _ = tower.encode_tokens_masked({"features": fv, "mask": vmask, "coords": cv})
    dec = MaskedBagDecoder(16, 8, hidden=16, heads=2)
    pred = dec(tokens[:, 0], tokens[:, 1:], index, vmask, coords, real)
    assert pred.shape == (2, 6, 8)
    loss = masked_reconstruction_loss(pred, feats, masked & real)
    loss.backward()
    assert loss.item() > 0 and tower.inp[0].weight.grad is not None
    # the loss only looks at masked items
    assert masked_reconstruction_loss(feats, feats, masked & real, norm_target=False).item() == 0.0


def test_bad_mask_config():
    with pytest.raises(ConfigError, match="ratio"):
        MaskConfig(ratio=1.0)
