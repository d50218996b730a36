"""``medvl zeroshot``: diagnose cases against disease concepts of the knowledge graph, without training."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import (
    RandomWeightsOpt,
    Result,
    StrictDomainOpt,
    TrustProvenanceOpt,
    command,
    emit_line,
)

app = typer.Typer()


def _line(rec: dict) -> str:
    res = rec.get("result")
    if res is None:
        present = rec["presence"]["present"]
        return f"{rec['case_ref']}: present: {', '.join(present) or 'none'}"
    if res["abstained"]:
        why = res.get("abstain_reason") or f"top {res['top'][0]['name']} {res['top'][0]['probability']:.2f}"
        return f"{rec['case_ref']}: abstained ({why})"
    implied = f" (implies {', '.join(res['implies'][:3])})" if res["implies"] else ""
    return f"{rec['case_ref']}: {res['name']} [{res['prediction']}] p={res['probability']:.2f}{implied}"


def _write_sr(out: Path, rec: dict, case: Path, graph, space, several: bool) -> dict:
    from medvl.tasks.interop.sr import INPUT_MODALITY, ModelInfo, write_zeroshot_sr

    target = out / f"{rec['case_ref']}.dcm" if several else out
    summary = write_zeroshot_sr(target, rec["result"], graph, ModelInfo.of(space.source), case.stem,
                                INPUT_MODALITY.get(rec.get("input", ""), "image"))
    return {k: summary[k] for k in ("path", "private_codes", "notes")}


@command(app, "zeroshot")
def zeroshot(
    cases: Annotated[list[Path], typer.Argument(help="Tile-feature .h5, image file, or embeddings file (CT).")],
    model: Annotated[Path, typer.Option("--model", help="Model folder, registered model name, or an installed "
                                        "vision-language model card (plip, quiltnet-b-16, quiltnet-b-32, conch-v1).")],
    node: Annotated[Optional[str], typer.Option("--node", help="Graph node: it and its descendants are the classes.")] = None,  # noqa: UP045, E501
    classes: Annotated[str, typer.Option("--classes", help="Comma-separated concept ids and/or free-text names.")] = "",
    class_: Annotated[Optional[list[str]], typer.Option("--class", help="One class (a concept id or a free-text name, "  # noqa: UP045
                                                        "commas allowed); repeat it for each class.")] = None,
    graph_file: Annotated[Optional[Path], typer.Option("--graph", "-g", help="A graph file from 'medvl ontology "  # noqa: UP045
                                                       "build' (default: the bundled graph).")] = None,
    method: Annotated[str, typer.Option(help="Slide pooling: topk (MI-Zero), mean or keep (KEEP rule).")] = "topk",
    topk: Annotated[int, typer.Option(help="Tiles per class for topk pooling.")] = 50,
    templates: Annotated[str, typer.Option(help="Template set (pathology, radiology) or a template file.")] = "pathology",  # noqa: E501
    temperature: Annotated[float, typer.Option(help="Softmax temperature.")] = 0.01,
    abstain_below: Annotated[Optional[float], typer.Option(help="Abstain / back off to a parent below this probability.")] = None,  # noqa: UP045, E501
    presence: Annotated[bool, typer.Option("--presence", help="Per-disease present/absent prompt pairs (volumes).")] = False,  # noqa: E501
    modality: Annotated[Optional[str], typer.Option(help="Modality of an embeddings file (image, volume).")] = None,  # noqa: UP045
    tile_scores: Annotated[Optional[Path], typer.Option("--tile-scores", help="Write per-tile scores (.npz) of a single slide.")] = None,  # noqa: UP045, E501
    random_weights: RandomWeightsOpt = False,
    trust_provenance: TrustProvenanceOpt = False,
    strict_domain: StrictDomainOpt = False,
    dicom_sr: Annotated[Optional[Path], typer.Option("--dicom-sr", help="Write the findings as a DICOM SR (TID 1500): a .dcm file for one case, a folder (<case_ref>.dcm) for several.")] = None,  # noqa: UP045, E501
) -> Result:
    """Zero-shot diagnosis: rank the classes for each case, hierarchy-consistent, with optional abstention.

    Stored vectors are used only when their provenance says the model's own tower (weights, preprocessing) made
    them; each record carries the provenance of the model and the input.
    """
    from medvl.errors import InputError
    from medvl.tasks.space import JointSpace
    from medvl.tasks.zeroshot.classifier import ZeroShotConfig
    from medvl.tasks.zeroshot.run import ClassifierCache, classify_case, resolve_classes

    missing = [c for c in cases if not c.exists()]
    if missing:
        raise InputError(missing[0], "case file not found")
    cfg = ZeroShotConfig(templates=[templates], temperature=temperature, abstain_below=abstain_below)
    graph = _graph(graph_file)
    ids, free = resolve_classes(graph, node, [*classes.split(","), *(class_ or [])])
    if dicom_sr is not None:
        _check_sr(presence, graph, ids, free)
    space = JointSpace.load(model, random_weights=random_weights, trust_provenance=trust_provenance,
                            strict_domain=strict_domain)
    records = []
    prompts = ClassifierCache()  # class prompts encoded once for all the cases
    for i, case in enumerate(cases):
        rec = classify_case(case, space, graph, ids, free, cfg, method=method, topk=topk, presence=presence,
                            modality=modality, tile_scores_out=tile_scores if len(cases) == 1 else None,
                            cache=prompts)
        rec = {"index": i, **rec}
        if dicom_sr is not None and rec.get("result") is not None:
            rec["dicom_sr"] = _write_sr(dicom_sr, rec, case, graph, space, several=len(cases) > 1)
        records.append(rec)
        if len(cases) > 1:
            emit_line(rec)
    text = "\n".join(_line(r) for r in records)
    if len(cases) == 1:
        return Result(records[0], text)
    summary = {"cases": len(records), "abstained": sum(bool(r.get("result", {}).get("abstained")) for r in records)}
    return Result(summary, text)


def _graph(graph_file: Path | None):
    from medvl.errors import InputError
    from medvl.knowledge import DiseaseGraph, default_graph

    if graph_file is not None and not graph_file.is_file():
        raise InputError(graph_file, "graph file not found")
    return DiseaseGraph.load(graph_file) if graph_file is not None else default_graph()


def _check_sr(presence: bool, graph, ids: list[str], free: list[str]) -> None:
    """Refuse a DICOM SR request before anything is computed or written: every class needs a code."""
    from medvl.errors import ConfigError
    from medvl.tasks.interop.codes import code_concepts

    if presence:
        raise ConfigError("--dicom-sr reports ranked findings; it does not take --presence")
    code_concepts(graph, [(i, i) for i in ids] + [(k, k) for k in free])
