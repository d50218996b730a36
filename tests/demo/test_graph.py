"""The demo step `graph`."""

from __future__ import annotations

from medvl.demo.graph import step_graph
from medvl.workspace import Workspace


def test_graph_step_is_idempotent(tmp_path, graph):
    ws = Workspace(tmp_path / "ws").create()
    first = step_graph(ws)
    assert first["concepts"] == len(graph) and (ws.graph / "graph.json.gz").is_file()
    assert first["example"]["name"] == "breast cancer" and first["links"]["ONCOTREE"]["concepts_linked"] > 0
    assert step_graph(ws) == first  # speed is measured by benchmarks/bench_knowledge_build.py, not here
