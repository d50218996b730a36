"""`medvl ontology ...` as a user runs it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medvl.cli.main import app
from tests.conftest import assert_clean_error, run_cli
from tests.knowledge.conftest import TINY_OBO, write_obo


def invoke(*args: str):
    """In-process run (the default graph stays loaded between calls); subprocess runs cover the real entry point."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_build_search_show_on_a_user_obo(tmp_path):
    src = write_obo(tmp_path, "tiny.obo", TINY_OBO)
    out = tmp_path / "g"
    res = run_cli("ontology", "build", "--source", str(src), "--source", "oncotree", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = res.json()
    assert summary["by_source"] == {"TEST": 5, "ONCOTREE": 898}
    assert (out / "graph.json.gz").is_file() and (out / "build_summary.json").is_file()
    hits = json.loads(invoke("ontology", "search", "Renal Cancers", "-k", "2", "--graph", str(out / "graph.json.gz"),
                             "--json"))
    assert hits["hits"][0]["id"] == "TEST:2"
    show = json.loads(invoke("ontology", "show", "TEST:4", "--graph", str(out / "graph.json.gz"), "--json"))
    assert [p["id"] for p in show["ancestors"]] == ["TEST:3", "TEST:2", "TEST:1"]


def test_show_lists_links_of_the_bundled_graph():
    text = invoke("ontology", "show", "ONCOTREE:CCRCC")
    assert "links:" in text and "clear cell renal cell carcinoma (DOID:4467)" in text


def test_prompts_and_groups_json():
    prompts = json.loads(invoke("ontology", "prompts", "DOID:1612", "--templates", "radiology", "--json"))
    assert "an ultrasound image of breast cancer." in prompts["DOID:1612"]
    lines = [json.loads(line) for line in invoke("ontology", "groups", "DOID:1612", "DOID:4467", "--json").splitlines()]
    assert [g["id"] for g in lines] == ["DOID:1612", "DOID:4467"] and "hierarchy" in lines[1]["kinds"]


def test_bad_inputs_give_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["ontology", "show", "DOID:99999999"])
    assert result.exit_code == 2 and "error: unknown concept id 'DOID:99999999'" in result.output
    bad = write_obo(tmp_path, "bad.obo", "[Term]\nid: X:1\nname: a\nsynonym: \"b\" SAME []\n")
    assert_clean_error(run_cli("ontology", "build", "--source", str(bad), "--out", str(tmp_path / "o")),
                       "bad.obo", "line 7")
    assert not (tmp_path / "o" / "graph.json.gz").exists()
    assert_clean_error(run_cli("ontology", "build", "--source", "nosuch", "--out", str(tmp_path / "o")),
                       "unknown source")
