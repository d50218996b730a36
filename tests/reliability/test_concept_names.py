"""Every disease concept the docs, configs, demo and apps name by id has the name they give it (issue 16, item 7).

Before: README, docs/training.md, the demo and the apps called DOID:0060085 "breast benign neoplasm"; in the bundled
Disease Ontology it is "organ system benign neoplasm". A claim is ``<name> (ID)`` or ``<name> ID`` in the text; it
holds when some trailing words of the name are the concept's name or one of its synonyms.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["README.md", "docs/*.md", "medvl/configs/**/*.yaml", "medvl/demo/*.py", "medvl/apps/*.py",
           "medvl/train/data.py"]
CLAIM = re.compile(r"(?<![\w-])(?P<name>[A-Za-z][\w'-]*(?: [A-Za-z][\w'-]*){0,7}) \(?(?P<id>(?:DOID|ICD10CM|ONCOTREE)"
                   r":[A-Za-z0-9.]*[A-Za-z0-9])\)?")


def _claims() -> list[tuple[str, str, str]]:
    out = []
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            for line in path.read_text(encoding="utf-8").splitlines():
                out += [(path.relative_to(ROOT).as_posix(), m["id"], m["name"]) for m in CLAIM.finditer(line)
                        if "medvl" not in m["name"].split()]  # a command line names no concept
    return out


@pytest.fixture(scope="module")
def graph():
    from medvl.knowledge import default_graph

    return default_graph()


def _names(graph, cid: str) -> set[str]:
    concept = graph.concept(cid)
    return {concept.name.lower(), *(s.text.lower() for s in concept.synonyms)}


def test_the_docs_name_some_concepts():
    ids = {cid for _, cid, _ in _claims()}
    assert {"DOID:1612", "DOID:1618", "ICD10CM:D24"} <= ids


def test_every_named_concept_has_the_name_claimed(graph):
    wrong = []
    for where, cid, text in _claims():
        words = text.lower().split()
        names = _names(graph, cid)
        if not any(" ".join(words[i:]) in names for i in range(len(words))):
            wrong.append(f"{where}: {cid} called '{text}', but it is '{graph.concept(cid).name}'")
    assert not wrong, "\n".join(wrong)


def test_the_demo_and_app_concepts_are_what_their_labels_say(graph):
    from medvl.apps.cases import BREASTMNIST_CONCEPTS
    from medvl.demo.train import CLASSES

    assert graph.concept(BREASTMNIST_CONCEPTS[0]).name == "breast cancer"
    assert "benign" in graph.concept(BREASTMNIST_CONCEPTS[1]).name.lower()
    assert "breast" in graph.concept(BREASTMNIST_CONCEPTS[1]).name.lower()
    for cid in CLASSES["benign"]:
        name = graph.concept(cid).name.lower()
        assert "breast" in name and ("benign" in name or "fibroadenoma" in name), name
    assert graph.concept("DOID:0060085").name == "organ system benign neoplasm"  # the name once claimed wrongly
