"""Demo step ``graph``: the disease knowledge graph in the workspace (``<workspace>/graph/graph.json.gz``)."""

from __future__ import annotations

from typing import Any

from medvl.demo.layout import GRAPH_FILE
from medvl.demo.steps import demo_step
from medvl.workspace import Workspace


@demo_step("graph", "build (or load) the disease knowledge graph from the bundled ontologies and ICD-10-CM")
def step_graph(ws: Workspace) -> dict[str, Any]:
    from medvl.knowledge import DiseaseGraph, default_graph

    path = ws.graph / GRAPH_FILE
    if path.is_file():
        graph = DiseaseGraph.load(path)
    else:
        graph = default_graph()
        graph.save(path)
    summary = graph.summary
    breast = graph.concept("DOID:1612")
    return {
        "graph": str(path.relative_to(ws.root)),
        "concepts": len(graph),
        "by_source": graph.sources(),
        "is_a_edges": summary.get("is_a_edges"),
        "links": summary.get("links", {}),
        "warnings": len(graph.warnings),
        "example": {"id": breast.id, "name": breast.name, "synonyms": len(breast.synonyms),
                    "children": len(graph.children(breast.id)), "links": breast.links},
    }
