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


def _index(path: Optional[Path]):  # noqa: UP045
    """The on-disk index of ``--graph`` or of the bundled graph: look-ups without reading the graph into memory."""
    from medvl.knowledge.build import cached_index, index_for_file

    return index_for_file(path) if path else cached_index()


def _graph(path: Optional[Path]):  # noqa: UP045
    return _index(path).graph()


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
    from medvl.knowledge.build import DEFAULT_SOURCES, file_fingerprint, graph_fingerprint, store_index
    from medvl.workspace import Workspace

    config = BuildConfig(sources=list(source) if source else list(DEFAULT_SOURCES), icd_extensions=icd_extensions,
                         strict=strict)
    graph = build_graph(config)
    folder = out or Workspace.resolve(workspace, create=True).graph
    path = graph.save(Path(folder) / "graph.json.gz")
    atomic_write_json(Path(folder) / "build_summary.json", graph.summary)
    index = store_index(graph, graph_fingerprint(config))  # later look-ups of this config answer from it
    store_index(graph, file_fingerprint(path))  # and those with --graph on the file just written
    data = {"graph": str(path), "index": str(index.path), **graph.summary}
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
    hits = [h.to_dict() for h in _index(graph).search(text, k=k)]
    lines = [f"{h['score']:6.1f}  {h['id']:<22} {h['name']}" + (f"  (matched '{h['matched']}', {h['match']})"
             if h["matched"] != h["name"] or h["match"] != "exact" else "") for h in hits]
    return Result({"query": text, "hits": hits}, "\n".join(lines) or "no match")


@command(app, "show")
def show(
    concept_id: Annotated[str, typer.Argument(metavar="ID", help="Concept id, e.g. DOID:1612, ONCOTREE:CCRCC.")],
    graph: GraphOpt = None,
) -> Result:
    """Name, synonyms, definition, parents, ancestors, children, cross-references and linked concepts."""
    g = _index(graph)
    c = g.concept(concept_id)
    parents, ancestors, children = c.parents, g.ancestors(c.id), g.children(c.id)
    names = g.names([*parents, *ancestors, *children, *c.links])

    def named(ids: list[str]) -> list[dict]:
        return [{"id": i, "name": names[i]} for i in ids]

    data = {**c.to_dict(), "parents": named(parents), "ancestors": named(ancestors), "children": named(children),
            "links": named(c.links)}
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
    result = _index(graph).prompts(ids, templates, scopes=tuple(scope or ["EXACT"]))
    lines = [f"{cid} ({len(p)} prompts)\n  " + "\n  ".join(p) for cid, p in result.items()]
    return Result(result, "\n".join(lines))


@command(app, "tag")
def tag(
    text: Annotated[Optional[str], typer.Argument(help="A caption or report sentence; '-' reads texts from stdin.")  # noqa: UP045
                    ] = None,
    source: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--input", "-i", help="Texts to tag: one per line, or a .csv/.tsv/.jsonl file (see --column); '-' for stdin.",
    )] = None,
    column: Annotated[str, typer.Option(help="Column (CSV/TSV) or key (JSONL) holding the texts.")] = "text",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSONL output file (default: stdout).")  # noqa: UP045
                   ] = None,
    keep_text: Annotated[bool, typer.Option(help="Copy each input text into its record (off: reports may hold "
                                                 "identifiers).")] = False,
    candidates: Annotated[bool, typer.Option(help="List every candidate concept of a mention.")] = False,
    graph: GraphOpt = None,
) -> Optional[Result]:  # noqa: UP045
    """Find disease concept mentions (longest match over names and synonyms), with negation and grade /
    differentiation qualifiers. One text, or many from a file or stdin written as JSONL (one record per text)."""
    from medvl.errors import InputError
    from medvl.knowledge.tagging import RecordMaker, TagConfig

    if (text is None) == (source is None):
        raise InputError(None, "give one text, or --input FILE ('-' for stdin), not both")
    index = _index(graph)
    make = RecordMaker(index.tagger(), index.name, TagConfig(column=column, keep_text=keep_text,
                                                               with_candidates=candidates))
    if source is None and text != "-":
        record = {"text": text, **make(None, text)}
        lines = [f"{m['start']:>4}-{m['end']:<4} {m['text']!r} -> {m['id']} {m['name']}"
                 + (" [negated]" if m["negated"] else "")
                 + "".join(f" {k}={v}" for k, v in m["qualifiers"].items()) for m in record["mentions"]]
        return Result(record, "\n".join(lines) or "no concept found")
    return _tag_many(str(source) if source is not None else "-", make, out)


def _tag_many(source: str, make, out: Optional[Path]) -> Optional[Result]:  # noqa: UP045
    import sys

    from medvl.knowledge.tagging import read_texts, stdin_text, tag_to_jsonl

    texts = read_texts(source, make.config.column, stdin=stdin_text() if source == "-" else None)
    stats = tag_to_jsonl(texts, make, out if out is not None else sys.stdout)
    summary = (f"tagged {stats['texts']} texts ({stats['with_concept']} with a concept, {stats['mentions']} mentions, "
               f"{stats['negated']} negated) in {stats['seconds']} s ({stats['texts_per_s']} texts/s)")
    if out is None:  # stdout carries the records; the summary goes to stderr
        from medvl.cli.common import echo

        echo(summary)
        return None
    return Result({"out": str(out), **stats}, f"{summary} -> {out}")


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
