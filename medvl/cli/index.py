"""``medvl index build|search``: FAISS retrieval indexes over slide features and embeddings."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import RandomWeightsOpt, Result, TrustProvenanceOpt, WorkspaceOpt, command

app = typer.Typer()

ModelOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--model", help="Model folder: project features into its joint space (needed for text queries)."),
]


@command(app, "build")
def build(
    inputs: Annotated[list[Path], typer.Argument(help="Feature .h5 files, embedding files (.npz/.npy/.parquet) "
                                                      "or folders of them.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Index folder (default: <workspace>/index/main).")] = None,  # noqa: UP045, E501
    model: ModelOpt = None,
    level: Annotated[str, typer.Option(help="slide: one mean-pooled vector per slide; tile: every row.")] = "slide",
    kind: Annotated[str, typer.Option(help="auto, flat (exact), ivf or hnsw.")] = "auto",
    nlist: Annotated[Optional[int], typer.Option(help="IVF cells (default ~4 sqrt(N)).")] = None,  # noqa: UP045
    nprobe: Annotated[int, typer.Option(help="IVF cells visited per query.")] = 32,
    random_weights: RandomWeightsOpt = False,
    trust_provenance: TrustProvenanceOpt = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Build a retrieval index (exact for small collections, IVF or HNSW for large ones) with Parquet metadata.

    Every input's provenance must show one embedding space (the same weights, preprocessing and tiling; with
    --model, that model's own tower): vectors of two encoders are refused.
    """
    from medvl.tasks.retrieval.build import build_index
    from medvl.tasks.retrieval.index import IndexConfig
    from medvl.workspace import Workspace

    out = out or Workspace.resolve(workspace).index / "main"
    rec = build_index(inputs, out, IndexConfig(kind=kind, nlist=nlist, nprobe=nprobe), level=level, model=model,
                      random_weights=random_weights, trust_provenance=trust_provenance)
    return Result(rec, f"{rec['kind']} index of {rec['count']} {rec['dim']}-d vectors ({rec['space']}) at {out}")


@command(app, "search")
def search(
    index: Annotated[Path, typer.Option("--index", help="Index folder written by 'medvl index build'.")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help="Text query (repeatable; needs --model).")] = None,  # noqa: UP045, E501
    query: Annotated[Optional[list[Path]], typer.Option("--query", help="Query file: feature .h5, embeddings, or an image (repeatable).")] = None,  # noqa: UP045, E501
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Hits per query.")] = 10,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF cells visited (more = better recall, slower).")] = None,  # noqa: UP045, E501
    random_weights: RandomWeightsOpt = False,
    trust_provenance: TrustProvenanceOpt = False,
    modality: Annotated[Optional[str], typer.Option("--modality", help="Search cases of this modality (slide, CT, ultrasound, ...); a query file's own kind is used otherwise.")] = None,  # noqa: UP045, E501
    mix_modalities: Annotated[bool, typer.Option("--mix-modalities", help="Return neighbours of every modality, stain, organ and magnification.")] = False,  # noqa: E501
) -> Result:
    """Nearest neighbours of text, image or case queries; JSON lists hits with scores and metadata.

    Hits are cases of the query's kind (modality and, where known, stain, organ, magnification); a query of a
    modality the index does not hold is refused unless --mix-modalities."""
    from medvl.tasks.retrieval.build import search_index

    results = search_index(index, texts=text or [], files=query or [], model=model, k=k, nprobe=nprobe,
                           random_weights=random_weights, trust_provenance=trust_provenance, modality=modality,
                           mix=mix_modalities)
    lines = []
    for res in results:
        lines.append(res["query"])
        for hit in res["hits"]:
            extra = ", ".join(f"{c}={v}" for c, v in hit.items() if c not in ("rank", "score", "id"))
            lines.append(f"  {hit['rank']:>3}  {hit['score']:.3f}  {extra}")
    return Result({"results": results}, "\n".join(lines))
