"""Exact top-N fuzzy matching (rapidfuzz ``WRatio``) over a fixed list of labels without scoring every label.

``process.extract(query, labels, scorer=WRatio, limit=N)`` scores all 72,000 labels of the default graph, 0.1-0.6 s
per query. The top of a WRatio ranking sits on a few levels: 100 (same string), 95 (token set or sort match), 90 (the
query inside a label 1.5-8x longer) and 85.5 (such a label sharing a word). For each level T, cheap upper bounds give a
superset of the labels that can score T or more:

* labels of similar length (WRatio's ``ratio`` and token branch): character-count bounds on ``ratio``, token-sort and
  token-set ratios, the latter from the lengths of the words they share with the query;
* labels 1.5-8x longer than the query (``partial_ratio``): a pigeonhole filter, since a window within ``D`` insertions
  or deletions of the query holds one of ``D + 1`` pieces of it unchanged, looked up in a trigram index;
* labels 1.5-8x shorter: character-count bounds on ``partial_ratio``.

The superset is scored with rapidfuzz itself. When N labels score T or more, they are the answer: every other label
scores below T. Otherwise the next level runs, and below 85.5 the full scan. The result equals ``process.extract``
exactly (same scores, ordered by score, then label position); a test compares both on several hundred queries.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

#: WRatio of a label 1.5-8x longer or shorter than the query that shares a word with it (partial token ratio 100)
SHARED_WORD = 100 * 0.95 * 0.9
#: the levels tried before the full scan, best first
LEVELS = (100.0, 95.0, 90.0, SHARED_WORD)
#: slack on every upper bound (rapidfuzz's float rounding is far smaller)
EPS = 1e-6
#: arrays that make up an index (``to_arrays`` / ``from_arrays``)
ARRAYS = ("lens", "dlens", "ntok", "order", "bag", "dbag", "gram_codes", "gram_offsets", "gram_ids",
          "tok_offsets", "tok_ids", "tok_lens")

Match = tuple[str, float, int]
_EMPTY = np.empty(0, np.int32)


def _branch(m: int, n: int) -> str:
    """WRatio's branch for a query of length ``m`` and a label of length ``n`` (the length ratio as rapidfuzz computes
    it): ``similar`` under 1.5, ``shorter`` / ``longer`` (the label) up to 8, ``far`` beyond."""
    ratio = m / n if m > n else n / m
    if ratio < 1.5:
        return "similar"
    if ratio <= 8.0:
        return "shorter" if n < m else "longer"
    return "far"


@dataclass
class _Query:
    """Per-query statistics shared by the bounds."""

    text: str
    m: int
    md: int  # length of the sorted distinct words joined by spaces
    nq: int  # distinct words
    chars: np.ndarray  # alphabet rows present in the query
    counts: np.ndarray  # their counts in the query
    dcounts: np.ndarray  # their counts in the distinct-word string
    shared_len: np.ndarray  # per label: letters of the words it shares with the query
    shared_n: np.ndarray  # per label: number of shared words
    tokens: list[str]
    cache: dict[str, Any]


class FuzzyIndex:
    """Labels plus the arrays the bounds need: lengths, character counts, word and trigram postings.

    Build with :meth:`build`; :meth:`to_arrays` / :meth:`from_arrays` store and restore it (the on-disk graph index
    keeps the arrays as blobs).
    """

    def __init__(self, keys: Sequence[str], arrays: dict[str, np.ndarray], alphabet: str, tokens: Sequence[str]):
        self.keys = list(keys)
        self.alphabet = alphabet
        self._col = {c: i for i, c in enumerate(alphabet)}
        self.tokens = list(tokens)  # sorted: looked up by bisection (no dict to build when the index is opened)
        for name in ARRAYS:
            setattr(self, name, arrays[name])
        self.sorted_lens = self.lens[self.order]
        self._windows: dict[tuple[int, str], tuple[int, int]] = {}
        self._pruning = fuzz.WRatio("ab cd", "ab xxxxxxxx") == SHARED_WORD  # the constant matches this rapidfuzz

    # ------------------------------------------------------------------ build and store
    @classmethod
    def build(cls, keys: Sequence[str]) -> FuzzyIndex:
        """Index ``keys`` (distinct strings of words separated by single spaces, as :func:`normalise` makes)."""
        keys = list(keys)
        alphabet = "".join(sorted({ch for k in keys for ch in k} | {" "}))
        words = [k.split() for k in keys]
        distinct = [" ".join(sorted(set(w))) for w in words]
        lens = np.fromiter(map(len, keys), np.int32, len(keys))
        order = np.argsort(lens, kind="stable").astype(np.int32)
        arrays = {
            "lens": lens,
            "dlens": np.fromiter(map(len, distinct), np.int32, len(keys)),
            "ntok": np.fromiter((len(set(w)) for w in words), np.int32, len(keys)),
            "order": order,
            "bag": _char_counts([keys[i] for i in order], alphabet),
            "dbag": _char_counts([distinct[i] for i in order], alphabet),
        }
        arrays.update(_trigram_postings(keys, alphabet))
        tokens, postings = _word_postings(words)
        arrays.update(postings)
        return cls(keys, arrays, alphabet, tokens)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the small metadata (alphabet, word list) that :meth:`from_arrays` needs besides the keys."""
        return {name: getattr(self, name) for name in ARRAYS}, {"alphabet": self.alphabet, "tokens": self.tokens}

    @classmethod
    def from_arrays(cls, keys: Sequence[str], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> FuzzyIndex:
        return cls(keys, arrays, meta["alphabet"], meta["tokens"])

    # ------------------------------------------------------------------ query
    def extract(self, query: str, limit: int, score_cutoff: float = 0.0) -> list[Match]:
        """The same list as ``process.extract(query, keys, scorer=fuzz.WRatio, limit=limit, score_cutoff=...)``."""
        if not query or limit <= 0:
            return []
        if self._pruning and score_cutoff <= SHARED_WORD:
            q = self._query(query)
            scores: dict[int, float] = {}
            for level in LEVELS:
                candidates, known = self._candidates(q, level)
                self._score(query, candidates, scores, score_cutoff)
                hits = [(s, i) for i, s in scores.items() if s >= level]
                if len(hits) + sum(len(ids) for ids, _ in known) >= limit:
                    return self._top(hits, known, limit)
        return process.extract(query, self.keys, scorer=fuzz.WRatio, limit=limit, score_cutoff=score_cutoff)

    def _query(self, text: str) -> _Query:
        tokens = sorted(set(text.split()))
        distinct = " ".join(tokens)
        chars = sorted({self._col[c] for c in text if c in self._col})
        alphabet = self.alphabet
        shared_len = np.zeros(len(self.keys), np.int32)
        shared_n = np.zeros(len(self.keys), np.int32)
        for tok in tokens:
            row = bisect.bisect_left(self.tokens, tok)
            if row < len(self.tokens) and self.tokens[row] == tok:
                ids = self.tok_ids[self.tok_offsets[row]:self.tok_offsets[row + 1]]
                shared_len[ids] += len(tok)
                shared_n[ids] += 1
        return _Query(
            text=text, m=len(text), md=len(distinct), nq=len(tokens),
            chars=np.asarray(chars, np.intp),
            counts=np.asarray([text.count(alphabet[c]) for c in chars], np.int32),
            dcounts=np.asarray([distinct.count(alphabet[c]) for c in chars], np.int32),
            shared_len=shared_len, shared_n=shared_n, tokens=tokens, cache={},
        )

    def _window(self, m: int, side: str) -> tuple[int, int]:
        """Slice of the length-sorted labels in one WRatio length branch: ``similar`` (ratio under 1.5), ``shorter``
        or ``longer`` (ratio 1.5 to 8, the label shorter or longer than the query)."""
        if (m, side) not in self._windows:
            max_len = int(self.sorted_lens[-1]) if len(self.sorted_lens) else 0
            ok = [n for n in range(1, max_len + 1) if _branch(m, n) == side]
            self._windows[m, side] = (0, 0) if not ok else (
                int(np.searchsorted(self.sorted_lens, ok[0], "left")),
                int(np.searchsorted(self.sorted_lens, ok[-1], "right")))
        return self._windows[m, side]

    def _overlap(self, q: _Query, lo: int, hi: int, distinct: bool = False) -> np.ndarray:
        """Size of the character multiset intersection of the query and each label in the sorted slice."""
        bag = self.dbag if distinct else self.bag
        counts = q.dcounts if distinct else q.counts
        total = np.zeros(hi - lo, np.int32)
        for row, count in zip(q.chars, counts, strict=True):
            total += np.minimum(bag[row, lo:hi], count)
        return total

    def _candidates(self, q: _Query, level: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        """Labels that may score ``level`` or more (to score), and groups of labels whose score is known exactly."""
        parts = [self._similar_length(q, level)]
        known: list[tuple[np.ndarray, float]] = []
        if level <= 90.0:
            for branch in (self._shorter, self._longer):
                ids, exact = branch(q, level)
                parts.append(ids)
                known += exact
        return self._union(parts), known

    def _similar_length(self, q: _Query, level: float) -> np.ndarray:
        """Labels with a length ratio under 1.5: WRatio = max(ratio, 0.95 x token sort / token set ratio)."""
        if "similar" not in q.cache:
            lo, hi = self._window(q.m, "similar")
            ids = self.order[lo:hi]
            n = self.sorted_lens[lo:hi].astype(np.float64)
            nd = self.dlens[ids].astype(np.float64)
            ratio = 200.0 * self._overlap(q, lo, hi) / (q.m + n)
            common = self._overlap(q, lo, hi, distinct=True).astype(np.float64)
            token_set = 200.0 * common / np.maximum(q.md + nd, 1)
            shared = q.shared_n[ids] > 0
            if shared.any():
                token_set = np.where(shared, self._token_set_shared(q, ids, nd, common), token_set)
            q.cache["similar"] = ids, np.maximum(ratio, 0.95 * token_set) + EPS
        ids, bound = q.cache["similar"]
        return ids[bound >= level]

    def _token_set_shared(self, q: _Query, ids: np.ndarray, nd: np.ndarray, common: np.ndarray) -> np.ndarray:
        """Upper bound of rapidfuzz's token_set_ratio for labels that share words with the query."""
        k = q.shared_n[ids].astype(np.float64)
        letters = q.shared_len[ids].astype(np.float64)
        sect = letters + k - 1
        a = q.md - sect - 1
        b = nd - sect - 1
        common_ab = common - letters - k  # characters the two differences can have in common
        dist = np.maximum(np.abs(a - b), a + b - 2 * common_ab)
        with np.errstate(divide="ignore", invalid="ignore"):
            both = 100.0 * (1 - dist / (2 * sect + 2 + a + b))
            with_a = 100.0 * (1 - (1 + a) / (2 * sect + 1 + a))
            with_b = 100.0 * (1 - (1 + b) / (2 * sect + 1 + b))
        bound = np.maximum(np.maximum(both, with_a), with_b)
        subset = (k >= q.nq) | (k >= self.ntok[ids])  # one word set inside the other: 100
        return np.where(subset, 100.0, np.nan_to_num(bound, nan=100.0))

    def _shorter(self, q: _Query, level: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        """Labels 1.5-8x shorter than the query (the label is partial_ratio's needle): bounds from character counts.

        A label inside the query scores exactly 90; one sharing a word with it and without a partial ratio of 95 or
        more scores exactly SHARED_WORD."""
        if "shorter" not in q.cache:
            lo, hi = self._window(q.m, "shorter")
            ids = self.order[lo:hi]
            n = self.sorted_lens[lo:hi].astype(np.float64)
            nd = self.dlens[ids].astype(np.float64)
            common = self._overlap(q, lo, hi).astype(np.float64)
            dcommon = self._overlap(q, lo, hi, distinct=True).astype(np.float64)
            partial = 0.9 * 200.0 * common / np.maximum(n + common, 1) + EPS
            dpartial = 0.855 * 200.0 * dcommon / np.maximum(np.minimum(q.md, nd) + dcommon, 1) + EPS
            tokens = np.maximum(partial * (0.855 / 0.9), dpartial)
            high = partial >= SHARED_WORD
            inside = ids[high][np.fromiter((self.keys[i] in q.text for i in ids[high].tolist()), bool, int(high.sum()))]
            q.cache["shorter"] = ids, partial, tokens, high, inside
        ids, partial, tokens, high, inside = q.cache["shorter"]
        if level > SHARED_WORD:  # only a label inside the query reaches 90
            return _EMPTY, [(inside, 90.0)]
        shared = q.shared_n[ids] > 0
        todo = ids[high | (~shared & (tokens >= level))]
        return self._minus(todo, inside), [(inside, 90.0), (ids[shared & ~high], SHARED_WORD)]

    def _longer(self, q: _Query, level: float) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        """Labels 1.5-8x longer than the query (the query is partial_ratio's needle): substring filters.

        A label holding the query scores exactly 90; one sharing a word with it and without a partial ratio of 95 or
        more scores exactly SHARED_WORD."""
        lo, hi = self._window(q.m, "longer")
        ids = self.order[lo:hi]
        if not len(ids):
            return _EMPTY, []
        inside = self._in_lengths(int(self.sorted_lens[lo]), int(self.sorted_lens[hi - 1]))
        if "holding" not in q.cache:
            q.cache["holding"] = self._pieces_found(q.text, 1.0, ids)
        holding = q.cache["holding"]
        exact = q.m <= 64  # rapidfuzz aligns longer needles heuristically: score those
        known = [(holding, 90.0)] if exact else []
        if level > SHARED_WORD:
            return (_EMPTY if exact else holding), known
        close = self._pieces_found(q.text, 0.95, ids)
        alone = ids[q.shared_n[ids] == 0]
        known.append((self._minus(ids[q.shared_n[ids] > 0], close), SHARED_WORD))
        words = sorted((t for t in q.tokens if len(t) >= 3), key=len)[-2:]
        if words:  # partial token ratio 100 without a shared word: every word of the query inside the label
            every = inside(self._contains_all(words))
            every = every[q.shared_n[every] == 0]
        else:
            every = alone
        odd = alone[self.dlens[alone] < q.md]  # the label's distinct words are the needle there
        todo = np.concatenate([close, every, odd])
        return (self._minus(todo, holding) if exact else todo), known

    def _in_lengths(self, n_lo: int, n_hi: int):
        def keep(ids: np.ndarray) -> np.ndarray:
            lens = self.lens[ids]
            return ids[(lens >= n_lo) & (lens <= n_hi)]

        return keep

    def _pieces_found(self, text: str, similarity: float, within: np.ndarray) -> np.ndarray:
        """Labels of ``within`` (one length range) that may hold a window of partial similarity ``similarity`` or
        more to ``text``.

        Such a window is at most D insertions and deletions away (D = 2 x len x (1 - similarity)); cut ``text`` into
        p disjoint pieces of 3 characters: an edit spoils at most one piece, so the window holds p - D pieces unchanged.
        """
        m = len(text)
        edits = int(2 * m * (1 - similarity) + 1e-9)
        lens = self.lens[within]
        keep = self._in_lengths(int(lens.min()), int(lens.max()))
        if edits == 0:  # the whole text is a substring
            if m >= 3:
                return keep(self._containing(text))
            return within[np.fromiter((text in self.keys[i] for i in within.tolist()), bool, len(within))]
        pieces = m // 3  # disjoint trigrams: their postings need no substring check
        need = pieces - edits
        if need <= 0:
            return within
        found = np.concatenate([keep(self._containing(text[3 * i:3 * i + 3])) for i in range(pieces)])
        return np.flatnonzero(np.bincount(found, minlength=len(self.keys)) >= need).astype(np.int32)

    def _contains_all(self, words: list[str]) -> np.ndarray:
        result = self._containing(words[0])
        for word in words[1:]:
            result = np.intersect1d(result, self._containing(word), assume_unique=True)
        return result

    def _containing(self, piece: str) -> np.ndarray:
        """Labels that contain ``piece`` (3 characters or more) as a substring: trigram postings, then a check."""
        col = self._col
        if any(c not in col for c in piece):
            return _EMPTY
        size = len(self.alphabet)
        codes = {(col[piece[i]] * size + col[piece[i + 1]]) * size + col[piece[i + 2]] for i in range(len(piece) - 2)}
        lists = []
        for code in codes:
            at = int(np.searchsorted(self.gram_codes, code))
            if at >= len(self.gram_codes) or self.gram_codes[at] != code:
                return _EMPTY
            lists.append(self.gram_ids[self.gram_offsets[at]:self.gram_offsets[at + 1]])
        lists.sort(key=len)
        ids = lists[0]
        for other in lists[1:]:
            ids = np.intersect1d(ids, other, assume_unique=True)
        if len(piece) == 3:
            return ids
        keys = self.keys
        return ids[np.fromiter((piece in keys[i] for i in ids.tolist()), bool, len(ids))]

    def _union(self, parts: list[np.ndarray]) -> np.ndarray:
        mask = np.zeros(len(self.keys), bool)
        for ids in parts:
            mask[ids] = True
        return np.flatnonzero(mask).astype(np.int32)

    def _minus(self, ids: np.ndarray, drop: np.ndarray) -> np.ndarray:
        if not len(drop) or not len(ids):
            return ids
        mask = np.zeros(len(self.keys), bool)
        mask[drop] = True
        return ids[~mask[ids]]

    def _score(self, query: str, ids: np.ndarray, scores: dict[int, float], cutoff: float) -> None:
        todo = [i for i in ids.tolist() if i not in scores]
        if not todo:
            return
        for i in todo:
            scores[i] = 0.0
        choices = [self.keys[i] for i in todo]
        for _, score, pos in process.extract(query, choices, scorer=fuzz.WRatio, limit=None, score_cutoff=cutoff):
            scores[todo[pos]] = score

    def _top(self, hits: list[tuple[float, int]], known: list[tuple[np.ndarray, float]], limit: int) -> list[Match]:
        scored = np.fromiter((i for _, i in hits), np.int64, len(hits))
        groups = [self._minus(ids, scored) for ids, _ in known]
        score = np.concatenate([np.fromiter((s for s, _ in hits), np.float64, len(hits))]
                               + [np.full(len(ids), value) for ids, (_, value) in zip(groups, known, strict=True)])
        ids = np.concatenate([scored] + [g.astype(np.int64) for g in groups])
        best = np.lexsort((ids, -score))[:limit]
        return [(self.keys[int(ids[j])], float(score[j]), int(ids[j])) for j in best]


# ---------------------------------------------------------------------- building blocks
def _codes(texts: Sequence[str], alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Alphabet positions of every character of ``texts`` (concatenated) and the text each belongs to."""
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(alphabet.encode("utf-32-le"), dtype=np.uint32)
    codes = np.searchsorted(table, points).astype(np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), [len(t) for t in texts])
    return codes, owner


def _char_counts(texts: Sequence[str], alphabet: str) -> np.ndarray:
    """``[len(alphabet), len(texts)]`` character counts (uint8, or uint16 when a count exceeds 255)."""
    codes, owner = _codes(texts, alphabet)
    counts = np.bincount(codes * len(texts) + owner, minlength=len(alphabet) * len(texts))
    counts = counts.reshape(len(alphabet), len(texts))
    return counts.astype(np.uint8 if counts.max(initial=0) <= 255 else np.uint16)


def _trigram_postings(keys: Sequence[str], alphabet: str) -> dict[str, np.ndarray]:
    codes, owner = _codes(keys, alphabet)
    size = len(alphabet)
    same = owner[:-2] == owner[2:]
    grams = ((codes[:-2] * size + codes[1:-1]) * size + codes[2:])[same]
    pairs = np.unique(grams * len(keys) + owner[:-2][same])
    gram, ids = pairs // len(keys), pairs % len(keys)
    gram_codes, starts = np.unique(gram, return_index=True)
    offsets = np.append(starts, len(ids)).astype(np.int64)
    return {"gram_codes": gram_codes.astype(np.int64), "gram_offsets": offsets, "gram_ids": ids.astype(np.int32)}


def _word_postings(words: Sequence[Sequence[str]]) -> tuple[list[str], dict[str, np.ndarray]]:
    tokens = sorted({w for ws in words for w in ws})
    row = {t: i for i, t in enumerate(tokens)}
    by_token: list[list[int]] = [[] for _ in tokens]
    for i, ws in enumerate(words):
        for w in set(ws):
            by_token[row[w]].append(i)
    offsets = np.cumsum([0] + [len(ids) for ids in by_token]).astype(np.int64)
    ids = np.fromiter((i for ids in by_token for i in ids), np.int32, int(offsets[-1]))
    return tokens, {"tok_offsets": offsets, "tok_ids": ids, "tok_lens": np.fromiter(map(len, tokens), np.int32)}
