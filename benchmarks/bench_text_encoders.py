"""Domain text encoders on real report tasks: base MiniLM vs continued pre-training (MLM), RTD, concept vocabulary
and a distilled student, each arm trained by the one trainer with the same CPU time budget, against the TF-IDF
baseline.

Corpus: the IU chest X-ray reports of the training split (sentences, up-sampled 8x; the test split's sentences are
kept out) and the names, synonyms and definitions of the bundled DO NCIthesaurus subset, OncoTree and ICD-10-CM
(the held-out synonym-linking queries kept out). Tasks: IU report classification (frozen embeddings + linear
probe, macro-AUC over labels with >= 30 positives, seeded patient-level split; TF-IDF word 1-2-grams + logistic
regression on the same split), synonym linking (held-out DO synonym -> concept among all 4,750 names, R@1) and
ROCO caption -> concept (captions whose UMLS CUIs map to DO concepts, recall@1/5 among the same names).

Needs ``../shared/data/image_text/indiana_reports.csv`` (CC BY-NC-ND, read in place, never copied): the record says
so. Arms: ``python benchmarks/bench_text_encoders.py [--minutes M] [--arms base,mlm,...]``; the record
``text_encoders_distill`` is the teacher and student alone with more time: ``--arms base,distill --minutes 10
--max-queries 1000 --record text_encoders_distill``. Run under
``flock /tmp/medvl-heavy.lock``; the load average is recorded (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_record  # noqa: E402
from medvl.resources import config_dir, shared_data_dir  # noqa: E402

RECIPES = config_dir() / "recipes"
SYNONYM_DATA = {"dataset": "graph-groups", "options": {"sources": ["doid_ncit"], "source": "DOID", "items": "concepts",
                                                       "holdout": True, "holdout_seed": 0}}


def _linking(max_queries: int):
    from medvl.train.data import build_dataset

    return build_dataset(SYNONYM_DATA["dataset"], SYNONYM_DATA["options"]), max_queries


def _throughput(model: Any, texts: list[str]) -> float:
    """Sentences (reports) per second of frozen encoding, batch 64, after one warm-up batch."""
    from medvl.tasks.report_classification import encode_texts

    encode_texts(model, texts[:64])
    start = time.perf_counter()
    encode_texts(model, texts)
    return round(len(texts) / (time.perf_counter() - start), 1)


def _captions(model: Any) -> dict[str, float]:
    """ROCO caption -> DO concept recall@1/5 (CUIs mapped through DO's UMLS xrefs); empty without the ROCO files."""
    from medvl.tasks.caption_concepts import CaptionConceptSection, eval_caption_concepts

    roco = shared_data_dir() / "image_text" / "roco_test_radiology"
    if not (roco / "cuis.txt").is_file():
        return {}
    result = eval_caption_concepts(CaptionConceptSection(captions=roco / "captions.txt", cuis=roco / "cuis.txt"),
                                   model=model)
    return {"caption_r@1": round(result["metrics"]["r@1"], 4), "caption_r@5": round(result["metrics"]["r@5"], 4)}


def _evaluate(model: Any, iu: Path, linking: tuple, seconds: dict) -> dict[str, float]:
    from medvl.tasks.report_classification import ReportClassificationSection, eval_report_classification, load_reports
    from medvl.train.config import EvalConfig
    from medvl.train.evaluations import run_evaluations

    speed = _throughput(model, load_reports(ReportClassificationSection(reports=iu)).texts[:512])
    start = time.perf_counter()
    result = eval_report_classification(ReportClassificationSection(reports=iu, baseline=False), model=model)
    dataset, max_queries = linking
    syn = run_evaluations(model, dataset, [EvalConfig("synonym-linking", {"max_queries": max_queries,
                                                                           "max_length": 32, "batch_size": 256})])
    seconds["eval"] = round(time.perf_counter() - start, 1)
    linked = syn["synonym-linking"]
    captions = _captions(model)
    return {**captions, "iu_macro_auc": round(result["metrics"]["macro_auc"], 4), "reports_per_s": speed,
            "synonym_r@1": round(linked["r@1"], 4), "synonym_r@5": round(linked["r@5"], 4)}


def _corpus_config(recipe: str, iu: Path, heldout: Path, minutes: float) -> Any:
    from medvl.train import TrainConfig

    data = TrainConfig.from_file(RECIPES / recipe).to_dict()
    stage = data["stages"][0]
    stage["max_minutes"] = minutes
    import torch

    if not torch.cuda.is_available():  # the recipes' bf16 is emulated on CPUs without native bf16: 15x slower here
        data["precision"] = "fp32"
    stage["data"]["options"].update(
        corpora=[{"name": "reports", "path": str(iu), "columns": ["findings", "impression"], "upsample": 8},
                 {"name": "graph", "format": "graph", "sources": ["doid_ncit", "oncotree", "icd10cm"]}],
        exclude=[{"path": str(heldout)}], exclude_match="exact")
    return data


def _train_arm(name: str, data: dict, tmp: Path) -> tuple[Any, dict]:
    from medvl.models import create_model
    from medvl.train import TrainConfig, train

    summary = train(TrainConfig.from_dict(data), tmp / name)
    result = next(iter(summary["stage_results"].values()))
    return create_model(tmp / name / "model"), {"steps": result["steps"], "train_s": result["seconds"]}


#: the distilled student's target: this share of the teacher's IU macro-AUC and synonym R@1 at this speed-up
STUDENT_SHARE, STUDENT_SPEEDUP = 0.95, 2.5
ARMS = {"mlm": "text-dapt-mlm.yaml", "rtd": "text-dapt-electra.yaml", "vocab": "text-vocab.yaml",
        "vocab-random": "text-vocab.yaml", "distill": "text-distill.yaml"}


def _arm_config(arm: str, iu: Path, heldout: Path, minutes: float) -> dict:
    data = _corpus_config(ARMS[arm], iu, heldout, minutes)
    vocab = data["model_config"]["towers"]["text"]["options"].get("vocab")
    if vocab is not None:  # held-out synonyms must not become their concept's token
        vocab["holdout_file"] = str(heldout)
    if arm == "vocab-random":
        vocab["init"] = "random"
    return data


def _heldout(iu: Path, folder: Path, linking: tuple) -> Path:
    from medvl.tasks.report_classification import ReportClassificationSection, heldout_texts
    from medvl.train.data.text_corpus import split_sentences

    texts = [s for t in heldout_texts(ReportClassificationSection(reports=iu)) for s in split_sentences(t)]
    texts += [q for q, _ in linking[0].linking_queries]
    path = folder / "heldout.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--arms", default="base,mlm,rtd,distill,vocab,vocab-random")
    parser.add_argument("--max-queries", type=int, default=1500)
    parser.add_argument("--record", default="text_encoders",
                        help="record name (e.g. text_encoders_distill for a longer base,distill run)")
    args = parser.parse_args()
    shared = shared_data_dir()
    iu = shared / "image_text" / "indiana_reports.csv" if shared else None
    if iu is None or not iu.is_file():
        sys.exit("needs ../shared/data/image_text/indiana_reports.csv")
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig
    from medvl.tasks.report_classification import ReportClassificationSection, eval_report_classification

    load = [os.getloadavg()]
    tfidf = eval_report_classification(ReportClassificationSection(reports=iu))["metrics"]["tfidf_macro_auc"]
    linking = _linking(args.max_queries)
    arms: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        heldout = _heldout(iu, tmp, linking)
        for arm in args.arms.split(","):
            seconds: dict = {}
            if arm == "base":
                model = create_model(ModelConfig.from_dict({"towers": {"text": {
                    "name": "hf-text", "options": {"max_length": 128}, "projection": "none"}}, "embed_dim": 384}))
                info: dict = {}
            else:
                model, info = _train_arm(arm, _arm_config(arm, iu, heldout, args.minutes), tmp)
            arms[arm] = {**_evaluate(model, iu, linking, seconds), **info, **seconds}
            load.append(os.getloadavg())
            print(json.dumps({arm: arms[arm]}), flush=True)
            _record(arms, tfidf, args, load)  # after every arm: a stopped run keeps what it measured


def _record(arms: dict, tfidf: float, args: Any, load: list) -> None:
    base, mlm = arms.get("base"), arms.get("mlm")
    gain = 100 * (mlm["iu_macro_auc"] - base["iu_macro_auc"]) if base and mlm else None
    syn_drop = 100 * (base["synonym_r@1"] - mlm["synonym_r@1"]) if base and mlm else None
    passed = None if gain is None else bool(gain >= 2 and syn_drop <= 1)
    student, teacher = arms.get("distill"), base
    distill = None
    if student and teacher:
        distill = {"iu_auc_share": round(student["iu_macro_auc"] / teacher["iu_macro_auc"], 4),
                   "synonym_r1_share": round(student["synonym_r@1"] / max(teacher["synonym_r@1"], 1e-9), 4),
                   "speedup": round(student["reports_per_s"] / teacher["reports_per_s"], 2),
                   "target": f">= {STUDENT_SHARE} of the teacher's IU macro-AUC and synonym R@1 at >= "
                             f"{STUDENT_SPEEDUP}x reports/s"}
    ratio, meaning = None if gain is None else mlm["iu_macro_auc"] / base["iu_macro_auc"], \
        "IU macro-AUC of the MLM-adapted encoder / the base MiniLM"
    target = "MLM vs base: IU macro-AUC +2 points, synonym R@1 not down > 1 point; beat TF-IDF"
    if mlm is None and distill is not None:  # a student-only run: the record is about the student
        ratio, meaning, target = distill["speedup"], "reports/s of the student / of the teacher", distill["target"]
        passed = bool(min(distill["iu_auc_share"], distill["synonym_r1_share"]) >= STUDENT_SHARE
                      and distill["speedup"] >= STUDENT_SPEEDUP)
    write_record(
        args.record,
        baseline="all-MiniLM-L6-v2 as shipped (frozen), and TF-IDF word 1-2-grams + logistic regression",
        figures={"arms": arms, "tfidf_iu_macro_auc": round(tfidf, 4), "minutes_per_arm": args.minutes,
                 "synonym_queries": args.max_queries, "mlm_iu_gain_points": gain,
                 "mlm_synonym_r1_drop_points": syn_drop, "distill_vs_teacher": distill,
                 "load_average_1_5_15": [list(x) for x in load]},
        ratio=ratio, ratio_meaning=meaning, target=target, passed=passed,
        notes="Results on ../shared/data (IU reports, CC BY-NC-ND): reproducible only where that folder exists. "
              "CPU, 2 shared cores; each arm the same training time budget.",
    )


if __name__ == "__main__":
    main()
