"""The on-disk graph index: same answers as the in-memory graph and the full scan, keyed by content, light to open."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rapidfuzz import fuzz, process

from medvl.errors import InputError
from medvl.knowledge import BuildConfig, DiseaseGraph, build, cached_graph
from medvl.knowledge.build import cached_index, graph_fingerprint, index_for_file
from medvl.knowledge.fuzzy import FuzzyIndex
from medvl.knowledge.search import label_rows, reference_search, sample_queries
from medvl.knowledge.store import GraphIndex
from medvl.knowledge.text import normalise
from tests.knowledge.conftest import TINY_OBO, write_obo

DO_AND_ONCOTREE = BuildConfig(sources=["doid_ncit", "doid_cancer_slim", "doid_top_nodes", "oncotree"])
HEAVY = ("torch", "pandas", "transformers", "timm", "monai", "sklearn", "scipy", "h5py", "openslide", "pydicom",
         "matplotlib", "PIL")


@pytest.fixture(scope="module")
def do_graph() -> DiseaseGraph:
    return cached_graph(DO_AND_ONCOTREE)


def test_index_ranks_200_queries_as_the_full_scan(do_graph):
    index = cached_index(DO_AND_ONCOTREE)
    reference = reference_search(do_graph)
    queries = sample_queries(do_graph, 200)
    assert len(set(queries)) > 180
    for query in queries:
        assert index.search(query, 10) == reference(query, 10), query
    assert [h.concept_id for h in index.search("renal clear cell carcinomas", 2)] == ["ONCOTREE:CCRCC", "DOID:4467"]


@pytest.mark.slow
def test_default_index_ranks_200_queries_as_the_full_scan(graph):
    index = cached_index()
    reference = reference_search(graph)
    for query in sample_queries(graph, 200, seed=1):
        assert index.search(query, 10) == reference(query, 10), query


def test_default_index_agrees_with_the_full_scan_on_a_sample(graph):
    index = cached_index()
    reference = reference_search(graph)
    for query in sample_queries(graph, 12, seed=2) + ["kidney cancer", "brest carcinoma", "C64.9", "CCRCC", "of"]:
        assert index.search(query, 10) == reference(query, 10), query
        assert graph.search(query, 10) == reference(query, 10), query


@pytest.fixture(scope="module")
def labels(do_graph) -> list[str]:
    return list(label_rows(do_graph))[:3000]


@pytest.fixture(scope="module")
def matcher(labels) -> FuzzyIndex:
    return FuzzyIndex.build(labels)


@given(st.text(alphabet="abcdeilmnorstuy 1é-", min_size=1, max_size=90), st.sampled_from([1, 7, 40]))
@example("of of the", 40)
@example("a", 40)
@example("carcinoma " * 8, 20)
@example("zzzzqqq", 5)
def test_matcher_equals_process_extract(matcher, labels, text, limit):
    query = normalise(text)
    expected = process.extract(query, labels, scorer=fuzz.WRatio, limit=limit, score_cutoff=60) if query else []
    assert matcher.extract(query, limit, 60) == expected


def test_index_show_and_prompts_match_the_graph(do_graph):
    index = cached_index(DO_AND_ONCOTREE)
    for cid in ("DOID:4467", "ONCOTREE:CCRCC", "DOID:4241"):
        assert index.concept(cid) == do_graph.concept(cid)
        assert index.ancestors(cid) == do_graph.ancestors(cid)
        assert index.children(cid) == do_graph.children(cid)
    assert index.prompts(["DOID:1612"], "radiology") == do_graph.prompts(["DOID:1612"], "radiology")
    with pytest.raises(InputError, match="no concepts with prefix FOO"):
        index.concept("FOO:1")


def test_graph_read_back_from_the_index_equals_the_built_graph(do_graph, tmp_path):
    again = cached_index(DO_AND_ONCOTREE).graph()
    assert [c.to_dict() for c in again] == [c.to_dict() for c in do_graph]
    assert again.summary == do_graph.summary and again.ancestors("DOID:4467") == do_graph.ancestors("DOID:4467")
    json_copy = DiseaseGraph.load(do_graph.save(tmp_path / "g.json.gz"))
    assert [c.to_dict() for c in json_copy] == [c.to_dict() for c in again]


def test_a_changed_source_rebuilds_never_answers_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVL_GRAPH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    src = write_obo(tmp_path, "tiny.obo", TINY_OBO)
    config = BuildConfig(sources=[str(src)])
    first = graph_fingerprint(config)
    assert cached_index(config).search("kidney cancer", 1)[0].concept_id == "TEST:2"
    stat = src.stat()
    src.write_text(src.read_text().replace("kidney cancer", "kidney tumour"))  # same size
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same modification time
    assert src.stat().st_size == stat.st_size and src.stat().st_mtime_ns == stat.st_mtime_ns
    assert graph_fingerprint(config) != first
    hit = cached_index(config).search("kidney tumour", 1)[0]
    assert (hit.concept_id, hit.match) == ("TEST:2", "exact")
    assert cached_graph(config).concept("TEST:2").name == "kidney tumour"


def test_a_damaged_index_is_rebuilt_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MEDVL_GRAPH_CACHE", str(tmp_path))
    monkeypatch.setattr(logging.getLogger("medvl"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="medvl")
    config = BuildConfig(sources=[str(write_obo(tmp_path, "tiny.obo", TINY_OBO))])
    path = cached_index(config).path
    monkeypatch.setattr(build, "_MEMORY", {})  # as a later process would
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(InputError, match="damaged graph index"):
        GraphIndex.open(path)
    assert cached_index(config).search("RCC", 1)[0].concept_id == "TEST:3"
    assert "ignoring cached graph index" in caplog.text
    assert sqlite3.connect(path).execute("SELECT count(*) FROM concepts").fetchone() == (5,)


def test_index_of_a_graph_file_follows_its_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVL_GRAPH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    graph = cached_graph(BuildConfig(sources=[str(write_obo(tmp_path, "tiny.obo", TINY_OBO))]))
    path = graph.save(tmp_path / "g.json")
    assert index_for_file(path).concept("TEST:5").name == "lung cancer"
    path.write_text(path.read_text().replace("lung cancer", "lung tumour"))
    assert index_for_file(path).concept("TEST:5").name == "lung tumour"


@pytest.mark.parametrize("args", [["search", "kidney cancer"], ["show", "DOID:4467"], ["prompts", "DOID:1612"],
                                  ["tag", "No evidence of pneumothorax"]])
def test_lookups_import_no_heavy_library(args, graph):
    code = ("import sys\nfrom medvl.cli.main import main\nsys.argv = ['medvl', 'ontology', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_missing_or_truncated_arrays_rebuild_the_index(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVL_GRAPH_CACHE", str(tmp_path))
    config = BuildConfig(sources=[str(write_obo(tmp_path, "tiny.obo", TINY_OBO))])
    path = cached_index(config).path
    monkeypatch.setattr(build, "_MEMORY", {})  # as a later process would
    sidecar = path.with_suffix(".arrays")
    sidecar.write_bytes(sidecar.read_bytes()[:100])
    with pytest.raises(InputError, match="damaged graph index"):
        GraphIndex.open(path)
    assert cached_index(config).search("kidny cancr", 1)[0].concept_id == "TEST:2"
    sidecar.unlink()
    monkeypatch.setattr(build, "_MEMORY", {})
    assert cached_index(config).search("renal cancer", 1)[0].concept_id == "TEST:2"


def test_without_a_writable_cache_folder_the_index_lives_in_memory(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(build, "cache_dirs", lambda: [blocker / "cache"])
    monkeypatch.setattr(logging.getLogger("medvl"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="medvl")
    config = BuildConfig(sources=[str(write_obo(tmp_path, "tiny.obo", TINY_OBO))])
    index = cached_index(config)
    assert str(index.path) == ":memory:" and "no writable graph cache folder" in caplog.text
    assert index.search("renal cancr", 1)[0].concept_id == "TEST:2"
    assert index.graph().concept("TEST:4").parents == ["TEST:3"]
