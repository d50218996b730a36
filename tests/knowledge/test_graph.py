"""The bundled graph: sources, links, hierarchy queries, search, groups, prompts, persistence."""

from __future__ import annotations

import pytest

from medvl.errors import InputError
from medvl.knowledge import DiseaseGraph, build_graph
from medvl.knowledge.build import BuildConfig
from tests.knowledge.conftest import TINY_OBO, write_obo


def test_default_graph_holds_every_source(graph):
    counts = graph.sources()
    assert counts["DOID"] >= 4750 and counts["ONCOTREE"] == 898 and counts["ICD10CM"] > 40_000
    assert graph.summary["links"]["ONCOTREE"]["concepts_linked"] > 300
    assert graph.summary["links"]["ICD10CM"]["concepts_linked"] > 1000
    assert graph.warnings == []


def test_oncotree_and_icd_link_to_doid(graph):
    assert "DOID:4467" in graph.links("ONCOTREE:CCRCC")
    assert "ONCOTREE:CCRCC" in graph.links("DOID:4467")
    assert "ICD10CM:C50" in graph.links("DOID:1612")
    icd = graph.concept("ICD10CM:C64.9")
    assert icd.parents == ["ICD10CM:C64"]
    assert graph.ancestors("ICD10CM:C64.9")[:2] == ["ICD10CM:C64", "ICD10CM:C64-C68"]
    assert "Lung cancer NOS" in [s.text for s in graph.concept("ICD10CM:C34.90").synonyms]


def test_hierarchy_queries(graph):
    ccrcc, rcc, kidney = "DOID:4467", "DOID:4450", "DOID:263"
    assert graph.ancestors(ccrcc)[0] == rcc
    assert kidney in graph.ancestors(ccrcc)
    assert ccrcc in graph.descendants(kidney) and rcc in graph.children("DOID:4451")
    assert graph.lowest_common_ancestor(ccrcc, "DOID:4465") == rcc  # papillary RCC
    assert graph.distance(ccrcc, "DOID:4465") == 2
    assert graph.distance(ccrcc, ccrcc) == 0
    assert graph.lowest_common_ancestor("ONCOTREE:CCRCC", "DOID:4467") is None
    assert graph.concept("DOID:4241").id == "DOID:1612"  # an alternative id resolves


def test_unknown_id_is_a_clear_error(graph):
    with pytest.raises(InputError, match="unknown concept id 'DOID:99999999'"):
        graph.concept("DOID:99999999")
    with pytest.raises(InputError, match="no concepts with prefix FOO"):
        graph.ancestors("FOO:1")


def test_search_exact_case_plural_then_fuzzy(graph):
    assert graph.search("Breast Cancers", 3)[0].concept_id == "DOID:1612"
    hit = graph.search("HEMANGIOSARCOMAS", 1)[0]
    assert (hit.concept_id, hit.match, hit.matched) == ("DOID:0001816", "exact", "hemangiosarcoma")
    fuzzy = graph.search("brest carcinoma", 3)
    assert fuzzy[0].concept_id == "DOID:3459" and fuzzy[0].match == "fuzzy"
    assert graph.search("C64.9", 1)[0].concept_id == "ICD10CM:C64.9"
    assert graph.search("CCRCC", 1)[0].concept_id == "ONCOTREE:CCRCC"
    scores = [h.score for h in graph.search("renal carcinoma", 10)]
    assert scores == sorted(scores, reverse=True)


def test_semantic_group_has_hierarchy_captions(graph):
    group = graph.groups(["DOID:4467"])[0]
    assert group.texts[0] == "clear cell renal cell carcinoma"
    assert "renal clear cell carcinoma" in group.by_kind("synonym")
    assert group.by_kind("definition")[0].startswith("A renal cell carcinoma")
    assert "clear cell renal cell carcinoma, a renal cell carcinoma, a renal carcinoma" in group.by_kind("hierarchy")
    assert len(set(t.lower() for t in group.texts)) == len(group.texts)


def test_relatives_mask_marks_ancestors_and_descendants(graph):
    ids = ["DOID:1612", "DOID:162", "DOID:4467", "DOID:3459", "DOID:4450"]
    mask = graph.relatives_mask(ids)
    assert mask.shape == (5, 5) and mask.dtype == bool and (mask == mask.T).all() and mask.diagonal().all()
    assert mask[0, 1] and mask[0, 3] and mask[2, 4]  # cancer is an ancestor; breast carcinoma a descendant
    assert not mask[0, 2] and not mask[3, 4]


def test_prompts_are_deduplicated_and_use_template_files(graph, tmp_path):
    prompts = graph.prompts(["DOID:1612", "DOID:4467"], "pathology")
    assert "a histopathology image of breast cancer." in prompts["DOID:1612"]
    assert "an H&E stained image of mammary tumor." in prompts["DOID:1612"]
    assert len(prompts["DOID:1612"]) == len({p.lower() for p in prompts["DOID:1612"]})
    custom = tmp_path / "mine.txt"
    custom.write_text("# comment\nCT: {}\nct: {}\n")
    assert graph.prompts(["DOID:1612"], str(custom))["DOID:1612"][0] == "CT: breast cancer"
    assert len(graph.prompts(["DOID:1612"], str(custom))["DOID:1612"]) == 7  # "ct: ..." duplicates dropped
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder\n")
    with pytest.raises(InputError, match="line 1"):
        graph.prompts(["DOID:1612"], str(bad))


def test_save_load_round_trip(tmp_path):
    graph = build_graph(BuildConfig(sources=[str(write_obo(tmp_path, "t.obo", TINY_OBO)), "oncotree"]))
    path = graph.save(tmp_path / "g.json.gz")
    again = DiseaseGraph.load(path)
    assert len(again) == len(graph) and again.summary == graph.summary
    assert again.concept("TEST:3").synonyms == graph.concept("TEST:3").synonyms
    assert again.ancestors("ONCOTREE:CCRCC") == graph.ancestors("ONCOTREE:CCRCC")
    (tmp_path / "junk.json.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match="not a medvl graph file"):
        DiseaseGraph.load(tmp_path / "junk.json.gz")
