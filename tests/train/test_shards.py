"""WebDataset shards (``webdataset`` dataset): BreastMNIST PNGs and captions written as open_clip-style shards,
streamed with a shuffle buffer, split across ranks and workers, resumed at the right sample."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medvl.errors import InputError
from medvl.train.data import build_dataset
from tests.train.cohort import CAPTIONS

pytest.importorskip("webdataset")
IMAGE = {"size": 32, "channels": "grayscale", "mean": [0.5], "std": [0.25], "interpolation": "bilinear"}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, n_shards: int = 4, per_shard: int = 12, drop: str | None = None) -> Path:
    """BreastMNIST training images as ``key.png`` + ``key.txt`` (+ ``key.json``) in ``n_shards`` tar files."""
    from PIL import Image

    from medvl.resources import bundled

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(bundled("breastmnist")) as data:
        images, labels = data["train_images"], data["train_labels"].reshape(-1)
    for s in range(n_shards):
        with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
            for j in range(per_shard):
                i = s * per_shard + j
                key = f"s{s}_{j:03d}"
                png = io.BytesIO()
                Image.fromarray(images[i]).save(png, format="PNG")
                caps = CAPTIONS[int(labels[i])]
                if drop != f"{key}.txt":
                    _add(tar, f"{key}.txt", caps[i % len(caps)].encode())
                _add(tar, f"{key}.png", png.getvalue())
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"))


def _ds(folder: Path, **options):
    return build_dataset("webdataset", {"shards": [str(folder / "shard-{000..003}.tar")], "image": IMAGE,
                                        "shuffle_buffer": 16, **options})


def _take(stream, n):
    return [next(stream) for _ in range(n)]


def test_shards_stream_split_across_ranks_and_resume_at_the_right_sample(shards):
    ds = _ds(shards)
    assert len(ds) == 48 and ds.counts()["shards"] == 4 and ds.counts()["tagged_rows"] > 0
    # two ranks read disjoint shards, the same number of batches each
    per_rank = ds.batches_per_epoch(4, 2, 0, 0)
    assert per_rank == 6
    seen = []
    for rank in (0, 1):
        batches = _take(ds.stream(0, 0, 4, rank, 2, 0), per_rank)
        assert [b for _, b, _ in batches] == list(range(per_rank))
        seen.append({round(float(x.sum()), 3) for _, _, batch in batches for x in batch["image"].flip(-1).abs()})
    assert not seen[0] & seen[1] and len(seen[0]) + len(seen[1]) >= 40  # disjoint samples (flip-invariant sums)
    full = _take(ds.stream(0, 0, 4, 0, 1, 0), 14)  # one rank: 12 batches of epoch 0, then epoch 1
    assert [(e, b) for e, b, _ in full][11:13] == [(0, 11), (1, 0)]
    resumed = _take(ds.stream(0, 5, 4, 0, 1, 0), 9)
    for (e1, b1, x), (e2, b2, y) in zip(full[5:], resumed, strict=False):
        assert (e1, b1) == (e2, b2) and x["text"] == y["text"] and torch.equal(x["image"], y["image"])
    other_epoch = _take(ds.stream(1, 0, 4, 0, 1, 0), 1)[0][2]
    assert other_epoch["text"] != full[0][2]["text"] or not torch.equal(other_epoch["image"], full[0][2]["image"])


def test_dataloader_workers_give_the_same_stream_every_time(shards):
    ds = _ds(shards, workers=2)
    first = _take(ds.stream(0, 0, 4, 0, 1, 0), 4)
    again = _take(ds.stream(0, 2, 4, 0, 1, 0), 2)
    assert all(torch.equal(a[2]["image"], b[2]["image"]) for a, b in zip(first[2:], again, strict=True))


def test_a_shard_with_a_missing_member_names_shard_and_sample(tmp_path):
    folder = write_shards(tmp_path, n_shards=4, per_shard=4, drop="s1_002.txt")
    with pytest.raises(InputError, match=r"shard 'shard-001.tar', sample 's1_002': missing member 'txt'"):
        _ds(folder)
    assert len(_ds(folder, skip_bad=True)) == 15


def test_the_trainer_streams_shards(shards, tmp_path):
    from medvl.train import TrainConfig, train

    cfg = TrainConfig.from_dict({
        "model": "tiny-clip", "device": "cpu", "threads": 1, "tensorboard": False, "checkpoint_every": 2,
        "data": {"dataset": "webdataset", "batch_size": 8,
                 "options": {"shards": [str(shards)], "image": IMAGE, "shuffle_buffer": 16}},
        "stages": [{"name": "align", "inputs": ["image", "text"], "steps": 4,
                    "losses": [{"name": "knowledge_group"}]}]})
    summary = train(cfg, tmp_path / "run")
    assert summary["global_steps"] == 4
    counts = (tmp_path / "run" / "data" / "align.counts.json").read_text()
    assert '"shards": 4' in counts
