"""A file of named numpy arrays that opens by memory-mapping: nothing is read until a query touches it.

Layout: one JSON header line (name -> dtype, shape, offset, format and version), then the raw arrays, each starting at
a 64-byte boundary. A fresh ``medvl ontology search`` maps the fuzzy matcher's 25 MB of arrays in about a millisecond
and reads only the pages of the postings and character counts its query needs (reading them from SQLite blobs took
70 ms). Written atomically; :func:`read_arrays` checks the header and the file size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medvl.atomic import atomic_path
from medvl.errors import InputError

FORMAT = "medvl-arrays"
VERSION = 1
ALIGN = 64


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (C-contiguous copies are made where needed) to ``path`` atomically."""
    path = Path(path)
    table, offset = {}, 0
    for name, array in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN
        table[name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        offset += array.nbytes
    header = json.dumps({"format": FORMAT, "version": VERSION, "size": offset, "arrays": table}).encode() + b"\n"
    start = -(-len(header) // ALIGN) * ALIGN
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.ljust(start, b" "))
        for name, array in arrays.items():
            fh.seek(start + table[name]["offset"])
            fh.write(np.ascontiguousarray(array).tobytes())
        fh.truncate(start + offset)
    return path


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Memory-map every array of a file written by :func:`write_arrays` (read-only views)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            line = fh.readline(1 << 20)
        header = json.loads(line)
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError("not a medvl array file of this version")
        start = -(-len(line) // ALIGN) * ALIGN
        if path.stat().st_size != start + header["size"]:
            raise ValueError(f"size {path.stat().st_size}, expected {start + header['size']}")
        # a plain ndarray over the mapping: np.memmap's Python-level indexing costs more than the look-ups themselves
        whole = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"damaged graph index arrays ({exc}); delete the index to rebuild") from None
    out = {}
    for name, spec in header["arrays"].items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        begin = start + spec["offset"]
        out[name] = whole[begin:begin + count * dtype.itemsize].view(dtype).reshape(spec["shape"])
    return out


def pack_strings(strings: Sequence[str]) -> dict[str, np.ndarray]:
    """UTF-8 bytes of ``strings`` joined by newlines (none may hold one) and the byte span of each, for
    :class:`PackedStrings`."""
    encoded = [s.encode("utf-8") for s in strings]
    if any(b"\n" in b for b in encoded):
        raise ValueError("a packed string may not contain a newline")
    starts = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) + 1 for b in encoded], out=starts[1:])
    return {"utf8": np.frombuffer(b"\n".join(encoded), np.uint8), "offsets": starts}


class PackedStrings(Sequence[str]):
    """A read-only sequence of strings decoded on access from :func:`pack_strings` arrays (memory-mapped)."""

    def __init__(self, utf8: np.ndarray, offsets: np.ndarray):
        self._utf8 = utf8
        self._offsets = offsets.tolist()
        self._all: list[str] | None = None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index):  # type: ignore[override]
        if self._all is not None:
            return self._all[index]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return bytes(self._utf8[self._offsets[index]:self._offsets[index + 1] - 1]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self.materialise())

    def materialise(self) -> list[str]:
        """All strings as a list (decoded once; later look-ups use it)."""
        if self._all is None:
            self._all = bytes(self._utf8).decode("utf-8").split("\n") if len(self) else []
        return self._all
