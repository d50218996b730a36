"""docs/reliability.md and the corpus say the same thing: one table row per (input, entry point), same outcome."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reliability.corpus import CASES

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
HEADER = "| input | made as | entry point | exit | error-line fragment (or reported text) | may leave |"


def _doc_rows() -> list[tuple[str, ...]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2  # skip the header and the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(tuple(cells))
    return rows


def _code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"expected a `code` cell, got {cell!r}"
    return match.group(1)


def _corpus_rows() -> list[tuple[str, ...]]:
    rows = []
    for case in CASES:
        for entry_point, expect in case.expect.items():
            leaves = ", ".join(f"`{p}`" for p in expect.leaves) or "nothing"
            rows.append((case.name, case.made_as, f"medvl {entry_point}", "≠ 0" if expect.fails else expect.exit,
                         expect.fragment, leaves))
    return rows


def test_doc_table_matches_the_corpus():
    doc = [(_code(name), made, _code(ep), exit_, _code(fragment), leaves)
           for name, made, ep, exit_, fragment, leaves in _doc_rows()]
    corpus = _corpus_rows()
    missing = [r for r in corpus if r not in doc]
    extra = [r for r in doc if r not in corpus]
    assert not missing and not extra, f"in the corpus, not the doc: {missing}\nin the doc, not the corpus: {extra}"
    assert len(doc) == len(corpus) == len(set(corpus))


def test_doc_counts_are_current():
    text = DOC.read_text(encoding="utf-8")
    entry_points = {ep for case in CASES for ep in case.expect}
    runs = sum(len(case.expect) for case in CASES)
    assert f"{runs} runs over {len(CASES)} inputs and {len(entry_points)} entry points" in text
