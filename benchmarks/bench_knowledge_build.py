"""Build time and peak memory of the full disease graph (bundled DO subsets + OncoTree + ICD-10-CM).

medvl: ``build_graph()`` from the source files, in a fresh process, then writing its on-disk look-up index (what the
first ``default_graph()`` does). Baseline in the same run: loading the same graph from gzipped JSON (what
``DiseaseGraph.load`` does with a file from ``medvl ontology build``), also in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_record  # noqa: E402

BUILD = """
import json, resource, sys, time
t = time.perf_counter()
from medvl.knowledge import build_graph
g = build_graph()
sec = time.perf_counter() - t
g.save(sys.argv[1])
from medvl.knowledge.store import write_index
t = time.perf_counter()
index = write_index(g, sys.argv[1] + ".sqlite", "bench")
print(json.dumps({"seconds": sec, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "summary": g.summary, "index_seconds": time.perf_counter() - t,
                  "index_mb": index.stat().st_size / 2**20}))
"""
LOAD = """
import json, resource, sys, time
t = time.perf_counter()
from medvl.knowledge import DiseaseGraph
g = DiseaseGraph.load(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "concepts": len(g),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "graph.json.gz")
        build = run(BUILD, path)
        size_mb = Path(path).stat().st_size / 2**20
        load = run(LOAD, path)
    s = build["summary"]
    write_record(
        "knowledge_build",
        baseline="loading the built graph from gzipped JSON (fresh process)",
        figures={
            "build_seconds": round(build["seconds"], 2),
            "build_peak_rss_mb": round(build["rss_mb"], 1),
            "index_write_seconds": round(build["index_seconds"], 2),
            "index_file_mb": round(build["index_mb"], 1),
            "load_seconds": round(load["seconds"], 2),
            "load_peak_rss_mb": round(load["rss_mb"], 1),
            "graph_file_mb": round(size_mb, 2),
            "concepts": s["concepts"],
            "by_source": s["by_source"],
            "is_a_edges": s["is_a_edges"],
            "links": s["links"],
            "warnings": s["warnings"],
        },
        ratio=build["seconds"] / load["seconds"],
        ratio_meaning="build time / gzipped-JSON load time (the index load is in knowledge_graph_load)",
        target=None,
        passed=None,
        notes="sources: doid_NCIthesaurus, doid_DO_cancer_slim, doid_TopNodes_DOcancerslim, OncoTree 2025-10-03, "
        "ICD-10-CM (simple-icd-10-cm, without 7th-character extensions)",
    )


if __name__ == "__main__":
    main()
