"""Fixtures of the knowledge tests: the bundled graph (cached) and small OBO files written on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvl.knowledge import DiseaseGraph, default_graph


@pytest.fixture(scope="session")
def graph() -> DiseaseGraph:
    return default_graph()


def write_obo(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("format-version: 1.2\nontology: test\n\n" + body.strip() + "\n", encoding="utf-8")
    return path


TINY_OBO = """
[Term]
id: TEST:1
name: disease
def: "A thing that is wrong." []

[Term]
id: TEST:2
name: kidney cancer
synonym: "renal cancer" EXACT []
synonym: "kidney neoplasm" RELATED [MESH:1]
xref: NCI:C9384
xref: UMLS_CUI:C0740457
is_a: TEST:1 ! disease

[Term]
id: TEST:3
name: renal cell carcinoma
synonym: "RCC" EXACT []
is_a: TEST:2 ! kidney cancer

[Term]
id: TEST:4
name: clear cell renal cell carcinoma
def: "A renal cell carcinoma with clear cells." []
is_a: TEST:3

[Term]
id: TEST:5
name: lung cancer
is_a: TEST:1
"""
