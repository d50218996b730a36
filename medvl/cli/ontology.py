"""``medvl ontology``: build, search and inspect the disease knowledge graph; train the knowledge text encoder."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import STATE, Result, WorkspaceOpt, command, emit_line

app = typer.Typer()

GraphOpt = Annotated[
    Optional[Path],  # noqa: UP045 - Typer reads Optional at runtime
    typer.Option("--graph", "-g", help="A graph file from `medvl ontology build` (default: the bundled graph)."),
]


def _graph(path: Optional[Path]):  # noqa: UP045
    from medvl.knowledge import DiseaseGraph, default_graph

    return DiseaseGraph.load(path) if path else default_graph()


@command(app, "build")
def build(
    source: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--source", "-s", help="Source name (doid_ncit, doid_cancer_slim, doid_top_nodes, oncotree, "
                     "icd10cm) or an .obo / OncoTree .json path; repeat for several. Default: all bundled + ICD."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: <workspace>/graph).")  # noqa: UP045
                   ] = None,
    icd_extensions: Annotated[bool, typer.Option(help="Include ICD-10-CM 7th-character extension codes.")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on any build warning.")] = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Build the graph from the ontology sources and write graph.json.gz plus build_summary.json."""
    from medvl.atomic import atomic_write_json
    from medvl.knowledge import BuildConfig, build_graph
    from medvl.knowledge.build import DEFAULT_SOURCES, store_cached_graph
    from medvl.workspace import Workspace

    config = BuildConfig(sources=list(source) if source else list(DEFAULT_SOURCES), icd_extensions=icd_extensions,
                         strict=strict)
    graph = build_graph(config)
    folder = out or Workspace.resolve(workspace, create=True).graph
    path = graph.save(Path(folder) / "graph.json.gz")
    atomic_write_json(Path(folder) / "build_summary.json", graph.summary)
    store_cached_graph(graph, config)
    data = {"graph": str(path), **graph.summary}
    s = graph.summary
    lines = [f"built {s['concepts']} concepts, {s['is_a_edges']} is-a edges in {s['build_seconds']} s -> {path}"]
    lines += [f"  {name}: {n} concepts" for name, n in s["by_source"].items()]
    lines += [f"  linked {src} -> DOID: {v['concepts_linked']} of {v['concepts']} concepts ({v['links']} links)"
              for src, v in s["links"].items()]
    if s["warnings"]:
        lines.append(f"  {s['warnings']} warnings (see build_summary.json / --verbose)")
    return Result(data, "\n".join(lines))


@command(app, "search")
def search(
    text: Annotated[str, typer.Argument(help="A disease name, synonym, abbreviation or id.")],
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    graph: GraphOpt = None,
) -> Result:
    """Find concepts by name or synonym: exact (case/plural-insensitive) matches first, then fuzzy ones."""
    hits = [h.to_dict() for h in _graph(graph).search(text, k=k)]
    lines = [f"{h['score']:6.1f}  {h['id']:<22} {h['name']}" + (f"  (matched '{h['matched']}', {h['match']})"
             if h["matched"] != h["name"] or h["match"] != "exact" else "") for h in hits]
    return Result({"query": text, "hits": hits}, "\n".join(lines) or "no match")


@command(app, "show")
def show(
    concept_id: Annotated[str, typer.Argument(metavar="ID", help="Concept id, e.g. DOID:1612, ONCOTREE:CCRCC.")],
    graph: GraphOpt = None,
) -> Result:
    """Name, synonyms, definition, parents, ancestors, children, cross-references and linked concepts."""
    g = _graph(graph)
    c = g.concept(concept_id)

    def named(ids: list[str]) -> list[dict]:
        return [{"id": i, "name": g.concept(i).name} for i in ids]

    data = {**c.to_dict(), "parents": named(c.parents), "ancestors": named(g.ancestors(c.id)),
            "children": named(g.children(c.id)), "links": named(c.links)}
    lines = [f"{c.id}  {c.name}  [{c.source}]"]
    if c.synonyms:
        lines.append("synonyms:    " + "; ".join(f"{s.text} ({s.scope})" for s in c.synonyms))
    if c.definitions:
        lines.append("definition:  " + c.definitions[0])
    for key in ("parents", "ancestors", "children", "links"):
        if data[key]:
            lines.append(f"{key + ':':<12} " + "; ".join(f"{d['name']} ({d['id']})" for d in data[key]))
    if c.xrefs:
        lines.append("xrefs:       " + "; ".join(f"{k}:{v}" for k, vs in c.xrefs.items() for v in vs))
    return Result(data, "\n".join(lines))


@command(app, "groups")
def groups(
    ids: Annotated[Optional[list[str]], typer.Argument(help="Concept ids (default: all of --source).")] = None,  # noqa: UP045
    source: Annotated[str, typer.Option(help="Source of the default set.")] = "DOID",
    limit: Annotated[int, typer.Option(help="At most this many groups (0: all).")] = 0,
    graph: GraphOpt = None,
) -> Optional[Result]:  # noqa: UP045
    """KEEP semantic groups (name, synonyms, definitions, hierarchy captions); one JSON line per group."""
    g = _graph(graph)
    chosen = list(ids) if ids else g.subgraph_ids(source)
    if limit:
        chosen = chosen[:limit]
    out, lines = [], []
    for group in g.groups(chosen):
        record = {"id": group.concept_id, "texts": list(group.texts), "kinds": list(group.kinds)}
        emit_line(record)
        out.append(record)
        lines.append(f"{group.concept_id}: " + " | ".join(group.texts))
    if STATE.json:
        return None  # the groups went out as JSON lines
    return Result(None, "\n".join(lines) or "no groups")


@command(app, "prompts")
def prompts(
    ids: Annotated[list[str], typer.Argument(help="Concept ids (the zero-shot classes).")],
    templates: Annotated[str, typer.Option(help="pathology, radiology, or a template file path.")] = "pathology",
    scope: Annotated[Optional[list[str]], typer.Option(help="Synonym scopes to use (default EXACT).")] = None,  # noqa: UP045
    graph: GraphOpt = None,
) -> Result:
    """Zero-shot prompt sets: names and synonyms through the templates, deduplicated."""
    result = _graph(graph).prompts(ids, templates, scopes=tuple(scope or ["EXACT"]))
    lines = [f"{cid} ({len(p)} prompts)\n  " + "\n  ".join(p) for cid, p in result.items()]
    return Result(result, "\n".join(lines))


@command(app, "tag")
def tag(
    text: Annotated[str, typer.Argument(help="Free text (a caption or report sentence).")],
    graph: GraphOpt = None,
) -> Result:
    """Find disease concept mentions in a text (longest match over names and synonyms)."""
    from medvl.knowledge.tagger import ConceptTagger

    g = _graph(graph)
    mentions = [m.to_dict() | {"name": g.concept(m.concept_id).name} for m in ConceptTagger.from_graph(g).find(text)]
    lines = [f"{m['start']:>4}-{m['end']:<4} {m['text']!r} -> {m['id']} {m['name']}" for m in mentions]
    return Result({"text": text, "mentions": mentions}, "\n".join(lines) or "no concept found")


@command(app, "train-text")
def train_text(
    config: Annotated[Path, typer.Option("--config", "-c", help="Knowledge-encoder train recipe (YAML/JSON).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: metrics, checkpoints, the final model/.")],
    graph: GraphOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")] = False,
) -> Result:
    """Knowledge-encoder stage: train a text tower on semantic groups (group contrastive loss + hierarchy mask).

    The recipe is a `medvl train` recipe (medvl/configs/knowledge/); synonym linking is measured before and after.
    """
    from medvl.cli.train import summary_text
    from medvl.train import TrainConfig
    from medvl.train import train as run_training

    cfg = TrainConfig.from_file(config)
    if graph is not None:
        cfg = cfg.with_data_options(graph=str(graph), sources=None)
    summary = run_training(cfg, out, resume=resume)
    return Result(summary, summary_text(summary))
