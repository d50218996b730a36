"""Arrays behind the fuzzy matcher: character counts, word postings, and trigram postings for substring filters.

All arrays are plain numpy arrays so the on-disk index stores them as blobs and reads them back without parsing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EMPTY = np.empty(0, np.int32)


def codes_of(texts: Sequence[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Alphabet positions of every character of ``texts`` (concatenated) and the text each belongs to."""
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(alphabet.encode("utf-32-le"), dtype=np.uint32)
    codes = np.searchsorted(table, points).astype(np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), [len(t) for t in texts])
    return codes, owner


def char_counts(texts: Sequence[str], alphabet: str) -> np.ndarray:
    """``[len(alphabet), len(texts)]`` character counts (uint8, or uint16 when a count exceeds 255)."""
    codes, owner = codes_of(texts, alphabet)
    counts = np.bincount(codes * len(texts) + owner, minlength=len(alphabet) * len(texts))
    counts = counts.reshape(len(alphabet), len(texts))
    return counts.astype(np.uint8 if counts.max(initial=0) <= 255 else np.uint16)


def _csr(keys: np.ndarray, ids: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Postings sorted by key: distinct keys, offsets into ids, ids (ascending within a key)."""
    order = np.lexsort((ids, keys))
    keys, ids = keys[order], ids[order]
    distinct, starts = np.unique(keys, return_index=True)
    offsets = np.append(starts, len(ids)).astype(np.int64)
    return {f"{prefix}_codes": distinct.astype(np.int64), f"{prefix}_offsets": offsets,
            f"{prefix}_ids": ids.astype(np.int32)}


def trigram_postings(keys: Sequence[str], alphabet: str) -> dict[str, np.ndarray]:
    """Every trigram -> labels holding it (``gram_*``), and each label's disjoint trigrams at positions 0, 3, 6, ...
    -> labels, once per position (``dgram_*``)."""
    codes, owner = codes_of(keys, alphabet)
    size = len(alphabet)
    grams = (codes[:-2] * size + codes[1:-1]) * size + codes[2:]
    same = owner[:-2] == owner[2:]
    pairs = np.unique(grams[same] * len(keys) + owner[:-2][same])
    arrays = _csr(pairs // len(keys), pairs % len(keys), "gram")
    starts = np.cumsum([0] + [len(k) for k in keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    positions = np.arange(len(codes) - 2) - np.repeat(starts, [len(k) for k in keys])[:-2] if len(codes) > 2 else EMPTY
    disjoint = same & (positions % 3 == 0)
    arrays.update(_csr(grams[disjoint], owner[:-2][disjoint], "dgram"))
    return arrays


def word_trigram_postings(words: Sequence[Sequence[str]], alphabet: str) -> dict[str, np.ndarray]:
    """Each label's disjoint trigrams inside its distinct words (positions 0, 3, 6, ... of every word) -> labels, once
    per piece (``wgram_*``), and the number of such pieces per label (``wpieces``)."""
    col = {c: i for i, c in enumerate(alphabet)}
    size = len(alphabet)
    codes: list[int] = []
    owners: list[int] = []
    counts = np.zeros(len(words), np.int32)
    for i, ws in enumerate(words):
        for w in set(ws):
            for at in range(0, len(w) - 2, 3):
                codes.append((col[w[at]] * size + col[w[at + 1]]) * size + col[w[at + 2]])
                owners.append(i)
        counts[i] = sum(len(w) // 3 for w in set(ws))
    arrays = _csr(np.asarray(codes, np.int64), np.asarray(owners, np.int64), "wgram")
    arrays["wpieces"] = counts
    return arrays


def word_postings(words: Sequence[Sequence[str]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Sorted distinct words and, for each, the labels holding it."""
    tokens = sorted({w for ws in words for w in ws})
    row = {t: i for i, t in enumerate(tokens)}
    by_token: list[list[int]] = [[] for _ in tokens]
    for i, ws in enumerate(words):
        for w in set(ws):
            by_token[row[w]].append(i)
    offsets = np.cumsum([0] + [len(ids) for ids in by_token]).astype(np.int64)
    ids = np.fromiter((i for ids in by_token for i in ids), np.int32, int(offsets[-1]))
    return tokens, {"tok_offsets": offsets, "tok_ids": ids}


class Trigrams:
    """Substring look-ups over the labels with their trigram postings.

    Args:
        keys: the labels.
        alphabet: the characters of the labels, sorted.
        arrays: ``gram_*`` and ``dgram_*`` postings from :func:`trigram_postings`.
    """

    def __init__(self, keys: Sequence[str], alphabet: str, arrays: dict[str, np.ndarray]):
        self.keys = keys
        self._col = {c: i for i, c in enumerate(alphabet)}
        self._size = len(alphabet)
        self._arrays = arrays

    def code(self, piece: str) -> int | None:
        """Code of a 3-character string (``None`` when a character occurs in no label)."""
        col = self._col
        if piece[0] not in col or piece[1] not in col or piece[2] not in col:
            return None
        return (col[piece[0]] * self._size + col[piece[1]]) * self._size + col[piece[2]]

    def _postings(self, prefix: str, code: int | None) -> np.ndarray:
        if code is None:
            return EMPTY
        return self._many(prefix, [code])[0]

    def _many(self, prefix: str, codes: Sequence[int]) -> list[np.ndarray]:
        """The postings of several codes (one search for all)."""
        table = self._arrays[f"{prefix}_codes"]
        offsets = self._arrays[f"{prefix}_offsets"]
        ids = self._arrays[f"{prefix}_ids"]
        wanted = np.asarray(codes, np.int64)
        at = np.searchsorted(table, wanted)
        found = (at < len(table)) & (table[np.minimum(at, len(table) - 1)] == wanted) if len(table) else at < 0
        return [ids[offsets[a]:offsets[a + 1]] if ok else EMPTY for a, ok in zip(at.tolist(), found.tolist(),
                                                                                  strict=True)]

    def _codes(self, text: str) -> list[int | None]:
        return [self.code(text[i:i + 3]) for i in range(len(text) - 2)]

    def containing(self, piece: str) -> np.ndarray:
        """Labels that contain ``piece`` (3 characters or more), ascending: the three rarest of its trigrams, then a
        substring check."""
        codes = self._codes(piece)
        if None in codes:
            return EMPTY
        lists = sorted(self._many("gram", sorted(set(codes))), key=len)
        ids = lists[0]
        for other in lists[1:3]:
            if not len(ids):
                break
            ids = np.intersect1d(ids, other, assume_unique=True)
        if len(piece) == 3:
            return ids
        keys = self.keys
        return ids[np.fromiter((piece in keys[i] for i in ids.tolist()), bool, len(ids))]

    def pieces_held(self, pieces: Sequence[str], size: int) -> np.ndarray:
        """Per label (``size`` labels): how many of ``pieces`` (3 characters each) it contains."""
        codes = [self.code(p) for p in pieces]
        found = self._many("gram", [c for c in codes if c is not None])
        return np.bincount(np.concatenate(found), minlength=size) if found else np.zeros(size, np.int64)

    def own_pieces_in(self, text: str, size: int, prefix: str = "dgram") -> np.ndarray:
        """Per label: how many of its disjoint trigrams occur somewhere in ``text`` (``dgram``: positions 0, 3, 6, ...
        of the label; ``wgram``: the same inside each of its distinct words)."""
        codes = sorted(set(self._codes(text)) - {None})
        found = self._many(prefix, codes)
        return np.bincount(np.concatenate(found), minlength=size) if found else np.zeros(size, np.int64)


def edits_within(length: int | np.ndarray, similarity: float) -> int | np.ndarray:
    """Most insertions plus deletions between a needle of ``length`` and a window of at most that length whose
    rapidfuzz ratio is ``similarity`` or more: ``2 x length x (1 - similarity)``."""
    return np.floor(2 * np.asarray(length) * (1 - similarity) + 1e-9).astype(np.int64)
