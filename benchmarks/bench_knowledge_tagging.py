"""Concept tagging throughput on real captions (ARCH pathology, ROCO radiology) and the share of captions tagged.

medvl: :class:`~medvl.knowledge.tagger.ConceptTagger` over every concept label of the default graph (longest match,
case/plural-insensitive), with negation and qualifiers (``tag``) and without (``find``), and ``medvl ontology tag
--input FILE`` end to end (one process, JSONL out). Baselines in the same run: a naive scan that tests every
(lower-cased) label as a substring of each caption, and one ``medvl ontology tag TEXT`` process per caption (how a
file had to be tagged before ``--input``), each on a sample of captions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_record  # noqa: E402
from medvl.knowledge import default_graph  # noqa: E402
from medvl.knowledge.build import cached_index  # noqa: E402
from medvl.knowledge.tagger import ConceptTagger  # noqa: E402
from medvl.resources import shared_data_dir  # noqa: E402

BASELINE_SAMPLE = 100
PROCESS_SAMPLE = 5


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


def aho_corasick_rates(tagger: ConceptTagger, texts: list[str]) -> dict | None:
    """The same longest-match search with a pyahocorasick automaton over the normalised text (when the package is
    importable): is it worth a compiled dependency?"""
    try:
        import ahocorasick
    except ImportError:
        return None
    from medvl.knowledge.text import singular, words

    automaton = ahocorasick.Automaton()
    for key, ids in tagger.lexicon.items():
        automaton.add_word(f" {key} ", (key.count(" ") + 1, len(key), ids))
    automaton.make_automaton()

    def find(text: str) -> list[tuple[int, int, str]]:
        toks = words(text)
        norm = [singular(w) for w, _, _ in toks]
        starts, pos = {}, 0
        for k, w in enumerate(norm):
            starts[pos] = k
            pos += len(w) + 1
        longest: dict[int, tuple[int, list[str]]] = {}
        for end, (count, size, ids) in automaton.iter(" " + " ".join(norm) + " "):
            first = starts.get(end - size - 1)
            if first is not None and (first not in longest or first + count - 1 > longest[first][0]):
                longest[first] = (first + count - 1, ids)
        out, i = [], 0
        while i < len(toks):
            best = longest.get(i) or ((i, tagger.acronyms[toks[i][0]]) if toks[i][0] in tagger.acronyms else None)
            if best is None:
                i += 1
                continue
            out.append((toks[i][1], toks[best[0]][2], best[1][0]))
            i = best[0] + 1
        return out

    start = time.perf_counter()
    found = [find(t) for t in texts]
    ac_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = [[(m.start, m.end, m.concept_id) for m in tagger.find(t)] for t in texts]
    dict_s = time.perf_counter() - start
    return {"ahocorasick_find_per_s": round(len(texts) / ac_s, 1), "dict_find_per_s": round(len(texts) / dict_s, 1),
            "same_mentions": found == reference}


def cli_rates(texts: list[str]) -> dict[str, float]:
    """``medvl ontology tag --input FILE --out OUT`` over all texts, against one process per caption (a sample)."""
    medvl = [str(Path(sys.executable).with_name("medvl"))]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
        start = time.perf_counter()
        subprocess.run([*medvl, "ontology", "tag", "--input", str(src), "--out", str(Path(tmp) / "o.jsonl")],
                       check=True, capture_output=True)
        file_s = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts[:PROCESS_SAMPLE]:
        subprocess.run([*medvl, "ontology", "tag", text, "--json"], check=True, capture_output=True)
    per_process = PROCESS_SAMPLE / (time.perf_counter() - start)
    return {"file_captions_per_s": round(len(texts) / file_s, 1), "file_seconds": round(file_s, 2),
            "one_process_per_caption_per_s": round(per_process, 2)}


def main() -> None:
    data = shared_data_dir()
    if data is None:
        print("shared/data not found; skipping")
        return
    graph = default_graph()
    start = time.perf_counter()
    tagger = ConceptTagger.from_graph(graph)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    cached_index().tagger()
    load_s = time.perf_counter() - start
    figures: dict = {"tagger_build_seconds": round(build_s, 2), "tagger_load_seconds": round(load_s, 2),
                     "labels": len(tagger.lexicon) + len(tagger.acronyms)}
    rates = []
    texts = captions(data)
    for name, items in texts.items():
        start = time.perf_counter()
        found = [tagger.tag(t) for t in items]
        sec = time.perf_counter() - start
        start = time.perf_counter()
        for t in items:
            tagger.find(t)
        find_s = time.perf_counter() - start
        tagged = sum(1 for f in found if f)
        doid = sum(1 for f in found if any(graph.concept(m.concept_id).source == "DOID" for m in f))
        rates.append(len(items) / sec)
        figures[name] = {"captions": len(items), "sentences_per_s": round(len(items) / sec, 1),
                         "find_sentences_per_s": round(len(items) / find_s, 1),
                         "share_tagged": round(tagged / len(items), 4), "share_with_doid": round(doid / len(items), 4),
                         "mentions_per_caption": round(sum(map(len, found)) / len(items), 3),
                         "share_negated": round(sum(m.negated for f in found for m in f) / max(1, sum(map(len, found))),
                                                4),
                         "mentions_with_qualifiers": sum(bool(m.qualifiers) for f in found for m in f)}
    figures["cli"] = cli_rates(texts["arch"] + texts["roco"])
    figures["ahocorasick"] = aho_corasick_rates(tagger, texts["arch"] + texts["roco"]) or "pyahocorasick not installed"
    sample = (texts["arch"] + texts["roco"])[:: max(1, 15_000 // BASELINE_SAMPLE)][:BASELINE_SAMPLE]
    labels = list(tagger.lexicon)
    base = naive_rate(labels, sample)
    medvl_rate = sum(rates) / len(rates)
    figures["naive_substring_sentences_per_s"] = round(base, 1)
    figures["cli_file_vs_process_per_caption"] = round(figures["cli"]["file_captions_per_s"]
                                                       / figures["cli"]["one_process_per_caption_per_s"], 1)
    write_record(
        "knowledge_tagging",
        baseline=f"naive substring scan of all {len(labels)} labels per caption ({len(sample)}-caption sample)",
        figures=figures,
        ratio=medvl_rate / base,
        ratio_meaning="captions/s of the medvl tagger (with negation and qualifiers) / naive substring scan "
                      "(higher is better)",
        target="`medvl ontology tag --input` at thousands of captions/s in one process",
        passed=figures["cli"]["file_captions_per_s"] >= 1000,
        notes="ARCH books+PubMed captions (deduplicated per figure) and ROCO test captions from ../shared/data. "
              f"`cli` runs the real command over all {len(texts['arch']) + len(texts['roco'])} captions (graph "
              f"index cached) against one `medvl ontology tag TEXT` process per caption on {PROCESS_SAMPLE} captions.",
    )


if __name__ == "__main__":
    main()
