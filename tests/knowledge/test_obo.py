"""OBO reading: the bundled Disease Ontology subsets and the bad inputs users make."""

from __future__ import annotations

import logging

import pytest

from medvl.errors import InputError
from medvl.knowledge import BuildConfig, build_graph
from medvl.knowledge.obo import read_obo
from medvl.resources import bundled
from tests.knowledge.conftest import TINY_OBO, write_obo


def test_bundled_ncit_subset_counts_and_fields():
    obo = read_obo(bundled("doid_ncit"))
    assert len(obo.concepts) == 4750  # live terms; 7 obsolete ones dropped
    angio = next(c for c in obo.concepts if c.id == "DOID:0001816")
    assert angio.name == "angiosarcoma"
    assert [(s.text, s.scope) for s in angio.synonyms] == [("hemangiosarcoma", "EXACT")]
    assert angio.parents == ["DOID:175"]
    assert angio.xrefs["NCI"] == ["C3088", "C9275"] and "C0018923" in angio.xrefs["UMLS"]
    assert angio.xrefs["ICDO"] == ["9120/3"] and angio.xrefs["MESH"] == ["D006394"]
    assert angio.definition.startswith("A vascular cancer")
    assert "DOID:267" in angio.alt_ids
    assert obo.replaced  # obsolete ids that point to their replacement


def test_user_obo_builds_a_graph(tmp_path):
    path = write_obo(tmp_path, "tiny.obo", TINY_OBO)
    graph = build_graph(BuildConfig(sources=[str(path)]))
    assert len(graph) == 5
    assert graph.ancestors("TEST:4") == ["TEST:3", "TEST:2", "TEST:1"]
    assert graph.concept("TEST:2").synonyms[1].scope == "RELATED"
    assert graph.concept("TEST:4").origin == "tiny.obo:24"


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("[Term\nid: X:1\nname: a\n", ["line 4", "malformed stanza header"]),
        ("[Term]\nid: X:1\nname a\n", ["line 6", "expected 'tag: value'"]),
        ("[Term]\nname: a\n", ["line 4", "without an id"]),
        ("[Term]\nid: X:1\n", ["line 4", "has no name"]),
        ("[Term]\nid: X:1\nname: a\n\n[Term]\nid: X:1\nname: b\n", ["line 8", "duplicate id X:1", "line 4"]),
        ('[Term]\nid: X:1\nname: a\nsynonym: "b EXACT []\n', ["line 7", "quoted string"]),
        ('[Term]\nid: X:1\nname: a\nsynonym: "b" SAME []\n', ["line 7", "unknown synonym scope"]),
    ],
)
def test_malformed_obo_names_file_and_line(tmp_path, body, needles):
    path = write_obo(tmp_path, "bad.obo", body)
    with pytest.raises(InputError) as err:
        read_obo(path)
    message = str(err.value)
    assert "bad.obo" in message
    for needle in needles:
        assert needle in message


def test_empty_synonym_is_a_warning_with_line(tmp_path, caplog):
    path = write_obo(tmp_path, "syn.obo", '[Term]\nid: X:1\nname: a\nsynonym: "" EXACT []\n')
    with caplog.at_level(logging.WARNING, logger="medvl"):
        graph = build_graph(BuildConfig(sources=[str(path)]))
    assert graph.concept("X:1").synonyms == []
    assert any("syn.obo: line 7: empty synonym" in w for w in graph.warnings)
    with pytest.raises(InputError, match="strict"):
        build_graph(BuildConfig(sources=[str(path)], strict=True))


def test_is_a_cycle_is_an_error_naming_the_terms(tmp_path):
    body = "[Term]\nid: X:1\nname: a\nis_a: X:2\n\n[Term]\nid: X:2\nname: b\nis_a: X:1\n"
    path = write_obo(tmp_path, "cycle.obo", body)
    with pytest.raises(InputError) as err:
        build_graph(BuildConfig(sources=[str(path)]))
    assert "is_a cycle" in str(err.value) and "cycle.obo:4" in str(err.value) and "X:2" in str(err.value)


def test_duplicate_ids_across_files_merge_and_warn_on_conflict(tmp_path):
    a = write_obo(tmp_path, "a.obo", "[Term]\nid: X:1\nname: kidney cancer\nsynonym: \"renal cancer\" EXACT []\n")
    b = write_obo(tmp_path, "b.obo", "[Term]\nid: X:1\nname: renal neoplasm\nsynonym: \"RCa\" EXACT []\n")
    graph = build_graph(BuildConfig(sources=[str(a), str(b)]))
    concept = graph.concept("X:1")
    assert concept.name == "kidney cancer"
    assert {s.text for s in concept.synonyms} == {"renal cancer", "RCa", "renal neoplasm"}
    assert any("b.obo:4" in w and "a.obo:4" in w for w in graph.warnings)


def test_dangling_parent_is_reported(tmp_path):
    path = write_obo(tmp_path, "d.obo", "[Term]\nid: X:1\nname: a\nis_a: X:99\n")
    graph = build_graph(BuildConfig(sources=[str(path)]))
    assert graph.parents("X:1") == []
    assert any("d.obo:4" in w and "X:99" in w for w in graph.warnings)


def test_missing_source_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_graph(BuildConfig(sources=[str(tmp_path / "nope.obo")]))
