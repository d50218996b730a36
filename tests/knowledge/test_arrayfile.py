"""The memory-mapped array file of the graph index: round trip, packed strings, damage detection."""

from __future__ import annotations

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.knowledge.arrayfile import PackedStrings, pack_strings, read_arrays, write_arrays


def test_arrays_and_strings_round_trip(tmp_path):
    labels = ["kidney cancer", "é", "", "carcinoma in situ"]
    arrays = {"ids": np.arange(7, dtype=np.int32), "bag": np.arange(6, dtype=np.uint8).reshape(2, 3),
              "empty": np.zeros(0, np.int64), **pack_strings(labels)}
    back = read_arrays(write_arrays(tmp_path / "a.arrays", arrays))
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in arrays.items())
    assert not back["ids"].flags.writeable
    packed = PackedStrings(back["utf8"], back["offsets"])
    assert [packed[i] for i in range(len(packed))] == labels and packed[-1] == labels[-1]
    assert packed.materialise() == labels and list(packed) == labels and packed[1:3] == labels[1:3]
    with pytest.raises(ValueError, match="newline"):
        pack_strings(["a\nb"])


def test_a_damaged_array_file_is_a_clear_error(tmp_path):
    path = write_arrays(tmp_path / "a.arrays", {"x": np.ones(100, np.float64)})
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(InputError, match="damaged graph index arrays"):
        read_arrays(path)
    (tmp_path / "b.arrays").write_bytes(b"not json\n")
    with pytest.raises(InputError, match="damaged"):
        read_arrays(tmp_path / "b.arrays")
