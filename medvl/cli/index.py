"""``medvl index build|search``: FAISS retrieval indexes over slide features and embeddings, and text indexes
(dense, sparse LexLIP or hybrid) over a table of documents."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import RandomWeightsOpt, Result, TrustProvenanceOpt, WorkspaceOpt, command

app = typer.Typer()

ModelOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--model", help="Model folder or a vision-language model card installed in the model store "
                 "(plip, quiltnet-b-16, quiltnet-b-32, conch-v1): project features into its joint space (needed for "
                 "text queries)."),
]


#: FAISS structures of a dense index (``dense`` = ``auto``)
DENSE_KINDS = ("auto", "flat", "ivf", "hnsw", "dense")
LexicalOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--lexical", help="Lexical encoder folder for sparse/hybrid text indexes (default: the tied head "
                                   "over the offline MiniLM)."),
]


def _text_build(texts: Path, text_column: str, id_column: str | None, out: Path, kind: str, structure: str,
                text_encoder: str, lexical: Path | None, fusion: str, alpha: float) -> Result:
    from medvl.tasks.retrieval.index import IndexConfig
    from medvl.tasks.retrieval.text import TextIndexConfig, read_text_table

    docs, meta, skipped = read_text_table(texts, text_column, id_column)
    cfg = TextIndexConfig(kind=kind, dense=IndexConfig(kind=structure), text_encoder=text_encoder,
                          lexical=None if lexical is None else str(lexical), fusion=fusion, alpha=alpha)
    from medvl.tasks.retrieval.text import build_text_index

    rec = {**build_text_index(docs, out, cfg, meta), "skipped_empty_rows": skipped}
    return Result(rec, f"{kind} text index of {rec['count']} documents at {out}"
                       + (f" ({skipped} empty rows skipped)" if skipped else ""))


@command(app, "build")
def build(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Feature .h5 files, embedding files "  # noqa: UP045
                                                                "(.npz/.npy/.parquet) or folders of them.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Index folder (default: <workspace>/index/main).")] = None,  # noqa: UP045, E501
    model: ModelOpt = None,
    level: Annotated[str, typer.Option(help="slide: one mean-pooled vector per slide; tile: every row.")] = "slide",
    kind: Annotated[str, typer.Option(help="Dense: auto, flat (exact), ivf, hnsw (dense = auto). Texts (--texts): "
                                           "dense, sparse (LexLIP inverted index) or hybrid (both, fused).")] = "auto",
    nlist: Annotated[Optional[int], typer.Option(help="IVF cells (default ~4 sqrt(N)).")] = None,  # noqa: UP045
    nprobe: Annotated[int, typer.Option(help="IVF cells visited per query.")] = 32,
    texts: Annotated[Optional[Path], typer.Option("--texts", help="Table (CSV/TSV/Parquet) of documents to index "  # noqa: UP045
                                                  "as text.")] = None,
    text_column: Annotated[str, typer.Option("--text-column", help="Column of --texts holding the text.")] = "text",
    id_column: Annotated[Optional[str], typer.Option("--id-column", help="Column of --texts kept as case_id.")] = None,  # noqa: UP045, E501
    text_encoder: Annotated[str, typer.Option("--text-encoder", help="Dense side of a text index: text tower or "
                                              "model.")] = "hf-text",
    lexical: LexicalOpt = None,
    fusion: Annotated[str, typer.Option(help="Hybrid fusion: minmax (weighted) or rrf (reciprocal ranks).")] = "minmax",
    alpha: Annotated[float, typer.Option(help="Weight of the dense score in minmax fusion.")] = 0.5,
    random_weights: RandomWeightsOpt = False,
    trust_provenance: TrustProvenanceOpt = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Build a retrieval index: dense FAISS over features or embeddings (exact, IVF or HNSW) with Parquet metadata,
    or over a table of texts (--texts): dense, sparse (lexical weights in an inverted index) or hybrid.

    Every input's provenance must show one embedding space (the same weights, preprocessing and tiling; with
    --model, that model's own tower): vectors of two encoders are refused.
    """
    from medvl.errors import ConfigError
    from medvl.tasks.retrieval.build import build_index
    from medvl.tasks.retrieval.index import IndexConfig
    from medvl.workspace import Workspace

    out = out or Workspace.resolve(workspace).index / "main"
    if texts is not None:
        if inputs:
            raise ConfigError("give either feature/embedding files or --texts, not both")
        text_kind = kind if kind in ("sparse", "hybrid") else "dense"
        structure = "auto" if kind in ("dense", "sparse", "hybrid") else kind
        return _text_build(texts, text_column, id_column, out, text_kind, structure, text_encoder, lexical, fusion,
                           alpha)
    if kind not in DENSE_KINDS:
        raise ConfigError(f"--kind {kind} indexes texts: give --texts TABLE --text-column COLUMN")
    if not inputs:
        raise ConfigError("give feature/embedding files or folders (or --texts TABLE)")
    rec = build_index(inputs, out, IndexConfig(kind="auto" if kind == "dense" else kind, nlist=nlist, nprobe=nprobe),
                      level=level, model=model, random_weights=random_weights, trust_provenance=trust_provenance)
    return Result(rec, f"{rec['kind']} index of {rec['count']} {rec['dim']}-d vectors ({rec['space']}) at {out}")


@command(app, "search")
def search(
    index: Annotated[Path, typer.Option("--index", help="Index folder written by 'medvl index build'.")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help="Text query (repeatable; needs --model).")] = None,  # noqa: UP045, E501
    query: Annotated[Optional[list[Path]], typer.Option("--query", help="Query file: feature .h5, embeddings, or an image (repeatable).")] = None,  # noqa: UP045, E501
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Hits per query.")] = 10,
    nprobe: Annotated[Optional[int], typer.Option(help="IVF cells visited (more = better recall, slower).")] = None,  # noqa: UP045, E501
    explain: Annotated[int, typer.Option("--explain", help="Sparse/hybrid text indexes: list up to N matched words "
                                         "per hit.")] = 0,
    lexical: LexicalOpt = None,
    random_weights: RandomWeightsOpt = False,
    trust_provenance: TrustProvenanceOpt = False,
    modality: Annotated[Optional[str], typer.Option("--modality", help="Search cases of this modality (slide, CT, ultrasound, ...); a query file's own kind is used otherwise.")] = None,  # noqa: UP045, E501
    mix_modalities: Annotated[bool, typer.Option("--mix-modalities", help="Return neighbours of every modality, stain, organ and magnification.")] = False,  # noqa: E501
) -> Result:
    """Nearest neighbours of text, image or case queries; JSON lists hits with scores and metadata (and, for sparse
    text indexes, which words matched).

    Hits are cases of the query's kind (modality and, where known, stain, organ, magnification); a query of a
    modality the index does not hold is refused unless --mix-modalities."""
    from medvl.tasks.retrieval.build import search_index
    from medvl.tasks.retrieval.text import TextIndex, is_text_index

    if is_text_index(index):
        tindex = TextIndex(index, lexical=None if lexical is None else str(lexical))
        hits = tindex.search(list(text or []), k=k, explain=explain)
        results = [{"query": f"text: {t}", "hits": h.to_dict(orient="records")} for t, h in zip(text or [], hits,
                                                                                                 strict=True)]
    else:
        results = search_index(index, texts=text or [], files=query or [], model=model, k=k, nprobe=nprobe,
                               random_weights=random_weights, trust_provenance=trust_provenance, modality=modality,
                               mix=mix_modalities)
    lines = []
    for res in results:
        lines.append(res["query"])
        for hit in res["hits"]:
            extra = ", ".join(f"{c}={v}" for c, v in hit.items() if c not in ("rank", "score", "id", "matched"))
            if hit.get("matched"):
                extra += "; matched: " + ", ".join(m["term"] for m in hit["matched"])
            lines.append(f"  {hit['rank']:>3}  {hit['score']:.3f}  {extra}")
    return Result({"results": results}, "\n".join(lines))
