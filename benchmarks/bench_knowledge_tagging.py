"""Concept tagging throughput on real captions (ARCH pathology, ROCO radiology) and the share of captions tagged.

medvl: :class:`~medvl.knowledge.tagger.ConceptTagger` over every concept label of the default graph (longest match,
case/plural-insensitive). Baseline in the same run: a naive scan that tests every (lower-cased) label as a substring
of each caption, on a sample of captions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_record  # noqa: E402
from medvl.knowledge import default_graph  # noqa: E402
from medvl.knowledge.tagger import ConceptTagger  # noqa: E402
from medvl.resources import shared_data_dir  # noqa: E402

BASELINE_SAMPLE = 100


def captions(data: Path) -> dict[str, list[str]]:
    arch = []
    for name in ("books_set_captions.json", "pubmed_set_captions.json"):
        rows = json.loads((data / "image_text" / "arch" / name).read_text(encoding="utf-8"))
        arch.extend(dict.fromkeys(r["caption"].strip() for r in rows.values()))  # figures repeat per sub-panel
    roco = []
    for line in (data / "image_text" / "roco_test_radiology" / "captions.txt").read_text(encoding="utf-8").splitlines():
        _, _, text = line.partition("\t")
        if text.strip():
            roco.append(text.strip())
    return {"arch": arch, "roco": roco}


def naive_rate(labels: list[str], texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        low = text.lower()
        _ = [lab for lab in labels if lab in low]
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    data = shared_data_dir()
    if data is None:
        print("shared/data not found; skipping")
        return
    graph = default_graph()
    start = time.perf_counter()
    tagger = ConceptTagger.from_graph(graph)
    build_s = time.perf_counter() - start
    figures: dict = {"tagger_build_seconds": round(build_s, 2), "labels": len(tagger.lexicon) + len(tagger.acronyms)}
    rates = []
    for name, texts in captions(data).items():
        start = time.perf_counter()
        found = [tagger.find(t) for t in texts]
        sec = time.perf_counter() - start
        tagged = sum(1 for f in found if f)
        doid = sum(1 for f in found if any(graph.concept(m.concept_id).source == "DOID" for m in f))
        rates.append(len(texts) / sec)
        figures[name] = {"captions": len(texts), "sentences_per_s": round(len(texts) / sec, 1),
                         "share_tagged": round(tagged / len(texts), 4), "share_with_doid": round(doid / len(texts), 4),
                         "mentions_per_caption": round(sum(map(len, found)) / len(texts), 3)}
    sample = (captions(data)["arch"] + captions(data)["roco"])[:: max(1, 15_000 // BASELINE_SAMPLE)][:BASELINE_SAMPLE]
    labels = list(tagger.lexicon)
    base = naive_rate(labels, sample)
    medvl_rate = sum(rates) / len(rates)
    figures["naive_substring_sentences_per_s"] = round(base, 1)
    write_record(
        "knowledge_tagging",
        baseline=f"naive substring scan of all {len(labels)} labels per caption ({len(sample)}-caption sample)",
        figures=figures,
        ratio=medvl_rate / base,
        ratio_meaning="captions/s of the medvl tagger / naive substring scan (higher is better)",
        target=None,
        passed=None,
        notes="ARCH books+PubMed captions (deduplicated per figure) and ROCO test captions from ../shared/data",
    )


if __name__ == "__main__":
    main()
