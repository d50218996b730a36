"""`medvl ontology ...` as a user runs it."""

from __future__ import annotations

from tests.conftest import assert_clean_error, run_cli
from tests.knowledge.conftest import TINY_OBO, write_obo


def test_build_search_show_on_a_user_obo(tmp_path):
    src = write_obo(tmp_path, "tiny.obo", TINY_OBO)
    out = tmp_path / "g"
    res = run_cli("ontology", "build", "--source", str(src), "--source", "oncotree", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = res.json()
    assert summary["by_source"] == {"TEST": 5, "ONCOTREE": 898}
    assert (out / "graph.json.gz").is_file() and (out / "build_summary.json").is_file()
    hits = run_cli("ontology", "search", "Renal Cancers", "-k", "2", "--graph", str(out / "graph.json.gz"), "--json")
    assert hits.json()["hits"][0]["id"] == "TEST:2"
    show = run_cli("ontology", "show", "TEST:4", "--graph", str(out / "graph.json.gz"), "--json").json()
    assert [p["id"] for p in show["ancestors"]] == ["TEST:3", "TEST:2", "TEST:1"]


def test_show_lists_links_of_the_bundled_graph():
    res = run_cli("ontology", "show", "ONCOTREE:CCRCC")
    assert res.returncode == 0, res.stderr
    assert "links:" in res.stdout and "clear cell renal cell carcinoma (DOID:4467)" in res.stdout


def test_prompts_and_groups_json():
    prompts = run_cli("ontology", "prompts", "DOID:1612", "--templates", "radiology", "--json").json()
    assert "an ultrasound image of breast cancer." in prompts["DOID:1612"]
    lines = run_cli("ontology", "groups", "DOID:1612", "DOID:4467", "--json").json_lines()
    assert [g["id"] for g in lines] == ["DOID:1612", "DOID:4467"] and "hierarchy" in lines[1]["kinds"]


def test_bad_inputs_give_one_clear_error(tmp_path):
    assert_clean_error(run_cli("ontology", "show", "DOID:99999999"), "unknown concept id")
    bad = write_obo(tmp_path, "bad.obo", "[Term]\nid: X:1\nname: a\nsynonym: \"b\" SAME []\n")
    assert_clean_error(run_cli("ontology", "build", "--source", str(bad), "--out", str(tmp_path / "o")),
                       "bad.obo", "line 7")
    assert not (tmp_path / "o" / "graph.json.gz").exists()
    assert_clean_error(run_cli("ontology", "build", "--source", "nosuch", "--out", str(tmp_path / "o")),
                       "unknown source")
