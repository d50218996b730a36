"""``medvl cohort check``: duplicates and leakage across the splits of a cohort manifest.

Settings come from :class:`~medvl.tasks.cohort.check.LeakageConfig` (``--config FILE``), overridden by the flags
given; a flag left out keeps the file's value or the dataclass default.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medvl.cli.common import Result, command

app = typer.Typer(no_args_is_help=True, help="Cohort manifests: leakage and duplicate check.")


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    """The record without case ids, rows and texts (what is printed unless --show-ids)."""
    out = {k: v for k, v in record.items() if k not in ("pictures", "texts", "leakage", "config")}
    for kind in ("pictures", "texts"):
        pool = record[kind]
        out[kind] = {"items": pool["items"], "pairs": pool["pairs"], "cross_split_pairs": pool["cross_split_pairs"],
                     "clusters": [{k: c[k] for k in ("size", "splits", "cross_split")} for c in pool["clusters"]]}
    leak = record["leakage"]
    out["leakage"] = {"case_ids_in_several_splits": len(leak["case_ids_in_several_splits"]),
                      "cross_split_clusters": leak["cross_split_clusters"], "leaks": leak["leaks"]}
    return out


def _text(record: dict[str, Any], out: Path | None) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in record["splits"].items()) or "none"
    lines = [f"{record['rows']} rows; splits: {splits}"]
    for kind in ("pictures", "texts"):
        pool = record[kind]
        cross = ", ".join(f"{k} {v}" for k, v in pool["cross_split_pairs"].items()) or "none"
        lines.append(f"{kind}: {pool['items']} items, {pool['pairs']['exact']} exact and {pool['pairs']['near']} near "
                     f"duplicate pairs in {len(pool['clusters'])} clusters; pairs across splits: {cross}")
    leak = record["leakage"]
    n_cases = leak["case_ids_in_several_splits"]
    n_cases = n_cases if isinstance(n_cases, int) else len(n_cases)
    lines.append(f"leakage: {n_cases} case id(s) in several splits, {leak['cross_split_clusters']} duplicate "
                 f"cluster(s) across splits" + (" - LEAKS" if leak["leaks"] else " - clean"))
    if out is not None:
        lines.append(f"report with per-pair evidence written to {out}")
    return "\n".join(lines)


@command(app, "check")
def check(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Cohort manifest (.csv/.tsv/.parquet).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the full report (JSON: clusters, "  # noqa: UP045
                                                "pairs with evidence, case ids).")] = None,
    splits: Annotated[Optional[str], typer.Option("--splits", help="Comma-separated splits that must be present "  # noqa: UP045
                                                  "and are compared (default: every split in the manifest).")] = None,
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="Column with report text [default: "  # noqa: UP045
                                                       "report].")] = None,
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="Text tower or model for report "  # noqa: UP045
                                                        "embeddings; 'none' compares wording only [default: "
                                                        "hf-text].")] = None,
    image_model: Annotated[Optional[str], typer.Option("--image-model", help="Model (name or checkpoint folder) "  # noqa: UP045
                                                      "whose image tower embeds image rows.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="LeakageConfig YAML/JSON (thresholds).")] = None,  # noqa: UP045
    examples: Annotated[bool, typer.Option("--examples", help="Put a text excerpt of each text cluster into "
                                           "--out.")] = False,
    show_ids: Annotated[bool, typer.Option("--show-ids", help="Print case ids and rows (the report file always "
                                           "has them).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 3 when anything leaks.")] = False,
) -> Result:
    """Find exact and near-duplicate pictures and reports (hashes, perceptual hashes, embeddings) and what crosses
    splits: the same case id in several splits, duplicate clusters spanning splits."""
    from medvl.atomic import atomic_write_json
    from medvl.cli.flags import config_from
    from medvl.log import warn
    from medvl.tasks.cohort.check import LeakageConfig, check_leakage

    wanted = [s.strip() for s in (splits or "").split(",") if s.strip()]
    no_text = text_encoder is not None and text_encoder.lower() == "none"
    cfg = config_from(LeakageConfig, config, splits=wanted or None, text_column=text_column,
                      text_encoder=None if no_text else text_encoder, image_model=image_model,
                      examples=True if examples else None)
    if no_text:
        cfg = cfg.replace(text_encoder=None)
    record = check_leakage(manifest, cfg)
    for warning in record["warnings"]:
        warn(warning)  # stderr in human mode, the warnings list of --json
    if out is not None:
        atomic_write_json(out, record)
    shown = record if show_ids else _redacted(record)
    code = 3 if strict and record["leakage"]["leaks"] else 0
    return Result({**shown, "report": None if out is None else str(out)}, _text(shown, out), exit_code=code)
