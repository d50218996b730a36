"""Exact top-N fuzzy matching (rapidfuzz ``WRatio``) over a fixed list of labels without scoring every label.

``process.extract(query, labels, scorer=WRatio, limit=N)`` scores all 72,000 labels of the default graph, 0.1-0.6 s
per query. The top of a WRatio ranking sits on a few levels: 100 (same string), 95 (token set or sort match), 90 (the
query inside a label 1.5-8x longer, or such a label inside the query) and 85.5 (such a label sharing a word). For each
level T (those four, then 80), cheap upper bounds give a superset of the labels that can score T or more:

* labels of similar length (WRatio's ``ratio`` and token branch): character-count bounds on ``ratio``, token-sort and
  token-set ratios, the latter from the lengths of the words they share with the query;
* labels 1.5-8x longer than the query (``partial_ratio``): a pigeonhole filter, since a window within ``D`` insertions
  or deletions of the query holds one of ``D + 1`` pieces of it unchanged, looked up in a trigram index;
* labels 1.5-8x shorter: the same pigeonhole filter the other way round (the label's disjoint trigrams found in the
  query), and character-count bounds.

The superset is scored with rapidfuzz itself. When N labels score T or more, they are the answer: every other label
scores below T. Otherwise the next level runs, and below 80 the full scan. The result equals ``process.extract``
exactly (same scores, ordered by score, then label position); a test compares both on several hundred queries.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from medvl.knowledge.arrayfile import PackedStrings
from medvl.knowledge.postings import (
    EMPTY,
    Trigrams,
    char_counts,
    edits_within,
    trigram_postings,
    word_postings,
    word_trigram_postings,
)

#: WRatio of a label 1.5-8x longer or shorter than the query that shares a word with it (partial token ratio 100)
SHARED_WORD = 100 * 0.95 * 0.9
#: the levels tried before the full scan, best first
LEVELS = (100.0, 95.0, 90.0, SHARED_WORD, 80.0)
#: slack on every upper bound (rapidfuzz's float rounding is far smaller)
EPS = 1e-6
#: arrays that make up an index (``to_arrays`` / ``from_arrays``)
ARRAYS = ("lens", "dlens", "ntok", "order", "bag", "dbag", "gram_codes", "gram_offsets", "gram_ids", "dgram_codes",
          "dgram_offsets", "dgram_ids", "wgram_codes", "wgram_offsets", "wgram_ids", "wpieces", "tok_offsets",
          "tok_ids")

Match = tuple[str, float, int]
Known = list[tuple[np.ndarray, float]]  # groups of labels whose exact score is known


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
        self.keys = keys if isinstance(keys, PackedStrings) else list(keys)  # packed: decoded on access
        self.alphabet = alphabet
        self._col = {c: i for i, c in enumerate(alphabet)}
        self.tokens = list(tokens)  # sorted: looked up by bisection (no dict to build when the index is opened)
        for name in ARRAYS:
            setattr(self, name, arrays[name])
        self.grams = Trigrams(self.keys, alphabet, {k: v for k, v in arrays.items() if "gram_" in k})
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
            "bag": char_counts([keys[i] for i in order], alphabet),
            "dbag": char_counts([distinct[i] for i in order], alphabet),
        }
        arrays.update(trigram_postings(keys, alphabet))
        arrays.update(word_trigram_postings(words, alphabet))
        tokens, postings = word_postings(words)
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
        if self._pruning and score_cutoff <= LEVELS[-1]:
            q = self._query(query)
            scores: dict[int, float] = {}
            for level in LEVELS:
                candidates, known = self._candidates(q, level)
                self._score(query, candidates, scores, score_cutoff)
                hits = [(s, i) for i, s in scores.items() if s >= level]
                if len(hits) + sum(len(ids) for ids, _ in known) >= limit:
                    return self._top(hits, known, limit)
        every = self.keys.materialise() if isinstance(self.keys, PackedStrings) else self.keys
        return process.extract(query, every, scorer=fuzz.WRatio, limit=limit, score_cutoff=score_cutoff)

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

    def _overlaps(self, q: _Query, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Sizes of the character multiset intersections of the query and each label in the sorted slice, for the
        strings themselves and for their sorted distinct words (the same unless a word repeats)."""
        common = np.zeros(hi - lo, np.int32)
        scratch = np.empty(hi - lo, self.bag.dtype)
        top = int(np.iinfo(self.bag.dtype).max)  # counts above the dtype's range cannot change the minimum
        for row, count in zip(q.chars, q.counts.tolist(), strict=True):
            common += np.minimum(self.bag[row, lo:hi], min(count, top), out=scratch)
        if q.md != q.m:  # the query repeats a word: every label's distinct-word string differs
            dcommon = np.zeros(hi - lo, np.int32)
            for row, count in zip(q.chars, q.dcounts, strict=True):
                dcommon += np.minimum(self.dbag[row, lo:hi], count)
            return common, dcommon
        ids = self.order[lo:hi]
        repeats = np.flatnonzero(self.dlens[ids] < self.sorted_lens[lo:hi]) + lo
        dcommon = common.copy()
        if len(repeats):
            part = np.zeros(len(repeats), np.int32)
            for row, count in zip(q.chars, q.dcounts, strict=True):
                part += np.minimum(self.dbag[row, repeats], count)
            dcommon[repeats - lo] = part
        return common, dcommon

    def _candidates(self, q: _Query, level: float) -> tuple[np.ndarray, Known]:
        """Labels that may score ``level`` or more (to score), and groups of labels whose score is known exactly."""
        parts = [self._similar_length(q, level)]
        known: Known = []
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
            plain, common = self._overlaps(q, lo, hi)
            ratio = 200.0 * plain / (q.m + n)
            token_set = 200.0 * common / np.maximum(q.md + nd, 1)
            shared = np.flatnonzero(q.shared_n[ids] > 0)
            if len(shared):
                token_set[shared] = self._token_set_shared(q, ids[shared], nd[shared], common[shared])
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

    def _shorter_stats(self, q: _Query) -> dict[str, np.ndarray]:
        """Bounds for the shorter labels. The trigram counts come first (postings, cheap); the character bounds are
        computed only for labels whose trigrams allow the lowest level (every test needs both)."""
        if "shorter" not in q.cache:
            lo, hi = self._window(q.m, "shorter")
            ids = self.order[lo:hi]
            n = self.sorted_lens[lo:hi].astype(np.float64)
            nd = self.dlens[ids].astype(np.float64)
            stats = {"ids": ids, "n": n, "thirds": self.sorted_lens[lo:hi].astype(np.int64) // 3,
                     "own": self.grams.own_pieces_in(q.text, len(self.keys))[ids],
                     "own_words": self.grams.own_pieces_in(q.text, len(self.keys), "wgram")[ids],
                     "odd": nd > q.md}  # the query's distinct words are the needle of the second token comparison
            lowest = LEVELS[-1]
            words = self.wpieces[ids].astype(np.int64)
            maybe = (self._pieces_mask(stats["thirds"], stats["own"], n, lowest / 90.0)
                     | self._pieces_mask(words, stats["own_words"], n, lowest / SHARED_WORD)
                     | stats["odd"] | (n >= q.m * lowest / (200.0 - lowest)))  # plain ratio: only near 1.5x shorter
            sub = np.flatnonzero(maybe)
            common, dcommon = (c.astype(np.float64) for c in self._overlaps_at(q, lo + sub))
            for key in ("partial", "tokens", "ratio"):
                stats[key] = np.zeros(len(ids))
            stats["partial"][sub] = 200.0 * common / np.maximum(n[sub] + common, 1) + EPS
            stats["tokens"][sub] = 0.855 * np.maximum(
                stats["partial"][sub], 200.0 * dcommon / np.maximum(np.minimum(q.md, nd[sub]) + dcommon, 1))
            stats["ratio"][sub] = 200.0 * common / (q.m + n[sub]) + EPS
            q.cache["shorter"] = stats
        return q.cache["shorter"]

    @staticmethod
    def _pieces_mask(pieces: np.ndarray, held: np.ndarray, n: np.ndarray, similarity: float) -> np.ndarray:
        need = pieces - edits_within(n, similarity)
        return (need <= 0) | (held >= need)

    def _overlaps_at(self, q: _Query, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_overlaps` for scattered columns of the length-sorted labels."""
        common = np.zeros(len(columns), np.int32)
        dcommon = np.zeros(len(columns), np.int32)
        for row, count, dcount in zip(q.chars, q.counts.tolist(), q.dcounts.tolist(), strict=True):
            common += np.minimum(self.bag[row, columns], count)
            dcommon += np.minimum(self.dbag[row, columns], dcount)
        return common, dcommon

    def _label_close(self, stats: dict[str, np.ndarray], similarity: float) -> np.ndarray:
        """Mask of shorter labels that may reach partial similarity ``similarity`` inside the query: enough shared
        characters, and p - D of their p disjoint trigrams found in it (D: :func:`edits_within`)."""
        key = f"close{similarity!r}"
        if key not in stats:
            pieces = self._pieces_mask(stats["thirds"], stats["own"], stats["n"], similarity)
            stats[key] = (stats["partial"] >= 100.0 * similarity) & pieces
        return stats[key]

    def _label_words_close(self, stats: dict[str, np.ndarray], ids: np.ndarray, level: float) -> np.ndarray:
        """Mask of shorter labels sharing no word whose partial token ratio may reach ``level``: the character bound,
        and p - D of the p disjoint trigrams inside their words found in the query (a piece inside a word cannot
        span two words of the sorted query)."""
        pieces = self._pieces_mask(self.wpieces[ids].astype(np.int64), stats["own_words"], stats["n"],
                                   level / SHARED_WORD)
        return (stats["tokens"] + EPS >= level) & (pieces | stats["odd"])

    def _shorter(self, q: _Query, level: float) -> tuple[np.ndarray, Known]:
        """Labels 1.5-8x shorter than the query (the label is partial_ratio's needle).

        A label inside the query scores exactly 90; one sharing a word with it and without a partial ratio of 95 or
        more scores exactly SHARED_WORD."""
        stats = self._shorter_stats(q)
        ids = stats["ids"]
        if "inside" not in q.cache:
            maybe = ids[self._label_close(stats, 1.0)]
            inside = maybe[np.fromiter((self.keys[i] in q.text for i in maybe.tolist()), bool, len(maybe))]
            long_needle = self.lens[inside] > 64  # rapidfuzz aligns longer needles heuristically: score those
            q.cache["inside"] = inside[~long_needle], inside[long_needle]
        inside, to_score = q.cache["inside"]
        if level > SHARED_WORD:  # only a label inside the query reaches 90
            return to_score, [(inside, 90.0)]
        high = self._label_close(stats, 0.95)
        shared = q.shared_n[ids] > 0
        alone = ~shared & (self._label_close(stats, level / 90.0) | self._label_words_close(stats, ids, level)
                           | (stats["ratio"] >= level))
        return self._minus(ids[high | alone], inside), [(inside, 90.0), (ids[shared & ~high], SHARED_WORD)]

    def _longer(self, q: _Query, level: float) -> tuple[np.ndarray, Known]:
        """Labels 1.5-8x longer than the query (the query is partial_ratio's needle): substring filters.

        A label holding the query scores exactly 90; one sharing a word with it and without a partial ratio of 95 or
        more scores exactly SHARED_WORD."""
        lo, hi = self._window(q.m, "longer")
        ids = self.order[lo:hi]
        if not len(ids):
            return EMPTY, []
        if "holding" not in q.cache:
            q.cache["holding"] = self._query_close(q.text, [q.text], 1.0, ids)
        holding = q.cache["holding"]
        exact = q.m <= 64  # rapidfuzz aligns longer needles heuristically: score those
        known: Known = [(holding, 90.0)] if exact else []
        if level > SHARED_WORD:
            return (EMPTY if exact else holding), known
        pieces = [q.text[3 * i:3 * i + 3] for i in range(q.m // 3)]
        close = self._query_close(q.text, pieces, 0.95, ids, q.cache)
        shared = q.shared_n[ids] > 0
        known.append((self._minus(ids[shared], close), SHARED_WORD))
        alone = ids[~shared]
        words = [t[3 * i:3 * i + 3] for t in q.tokens for i in range(len(t) // 3)]  # no piece spans two words
        todo = [close, self._query_close(q.text, pieces, level / 90.0, alone, q.cache),
                self._query_close(q.text, words, level / SHARED_WORD, alone, q.cache),
                alone[self.dlens[alone] < q.md]]  # the label's distinct words are the needle there
        if level <= 80.0:
            todo.append(self._longer_ratio(q, level, lo))
        todo = self._union(todo)
        return (self._minus(todo, holding) if exact else todo), known

    def _longer_ratio(self, q: _Query, level: float, lo: int) -> np.ndarray:
        """Longer labels whose plain ratio may reach ``level`` (only lengths up to m x (200 / level - 1) can)."""
        hi = int(np.searchsorted(self.sorted_lens, q.m * (200.0 / level - 1), "right"))
        if hi <= lo:
            return EMPTY
        bound = 200.0 * self._overlaps(q, lo, hi)[0] / (q.m + self.sorted_lens[lo:hi]) + EPS
        return self.order[lo:hi][bound >= level]

    def _query_close(self, text: str, pieces: list[str], similarity: float, within: np.ndarray,
                     cache: dict | None = None) -> np.ndarray:
        """Labels of ``within`` (one length range) holding enough ``pieces`` of ``text`` (disjoint, 3 characters, or
        ``[text]`` itself) for a window of partial similarity ``similarity`` to ``text``: an insertion or deletion
        spoils at most one piece, so such a window keeps p - D of p pieces (D: :func:`edits_within`)."""
        if not len(within):
            return EMPTY
        lens = self.lens[within]
        n_lo, n_hi = int(lens.min()), int(lens.max())
        if pieces == [text]:
            if len(text) < 3:
                return within[np.fromiter((text in self.keys[i] for i in within.tolist()), bool, len(within))]
            found = self.grams.containing(text)
            return found[(self.lens[found] >= n_lo) & (self.lens[found] <= n_hi)]
        need = len(pieces) - int(edits_within(len(text), similarity))
        if similarity > 1.0 or not pieces or need <= 0:
            return EMPTY if similarity > 1.0 else within
        held = cache.get(tuple(pieces)) if cache is not None else None
        if held is None:
            held = self.grams.pieces_held(pieces, len(self.keys))
            if cache is not None:
                cache[tuple(pieces)] = held
        return within[held[within] >= need]

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

    def _top(self, hits: list[tuple[float, int]], known: Known, limit: int) -> list[Match]:
        scored = np.fromiter((i for _, i in hits), np.int64, len(hits))
        groups = [self._minus(ids, scored) for ids, _ in known]
        score = np.concatenate([np.fromiter((s for s, _ in hits), np.float64, len(hits))]
                               + [np.full(len(ids), value) for ids, (_, value) in zip(groups, known, strict=True)])
        ids = np.concatenate([scored] + [g.astype(np.int64) for g in groups])
        best = np.lexsort((ids, -score))[:limit]
        return [(self.keys[int(ids[j])], float(score[j]), int(ids[j])) for j in best]
