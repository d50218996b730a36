"""The text-corpus dataset: formats, splitting, mixing with up-sampling, dedup, held-out texts, bad input."""

from __future__ import annotations

import json

import pytest

from medvl.errors import ConfigError, InputError
from medvl.train.data import build_dataset
from medvl.train.data.text_corpus import fold_text, split_sections, split_sentences

REPORTS = [
    "FINDINGS: The heart size is normal. No pleural effusion, e.g. on the left. IMPRESSION: No acute disease.",
    "FINDINGS: Right upper lobe mass of 3.5 cm. Dr. Smith was notified. IMPRESSION: Suspicious for lung cancer.",
    "FINDINGS: The heart size is normal. No pleural effusion, e.g. on the left. IMPRESSION: No acute disease.",
]


@pytest.fixture
def corpora(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,report\n" + "".join(f'c{i},"{r}"\n' for i, r in enumerate(REPORTS)))
    general = tmp_path / "general.txt"
    general.write_text("Lung cancer is a common cancer.\nThe breast is a gland.\n\nshort\n")
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ["Renal cell carcinoma of the left kidney.",
                                                                  "The breast is a gland."]) + "\n")
    return tmp_path


def test_sentences_keep_abbreviations_and_decimals_and_sections_follow_headings():
    assert split_sentences("Mass of 3.5 cm. Dr. Smith was notified. See e.g. the prior.") == [
        "Mass of 3.5 cm.", "Dr. Smith was notified.", "See e.g. the prior."]
    assert split_sections(REPORTS[0]) == ["The heart size is normal. No pleural effusion, e.g. on the left.",
                                          "No acute disease."]
    assert split_sections("no headings here.") == ["no headings here."]


def test_manifest_text_and_jsonl_mixed_deduplicated_and_upsampled(corpora):
    ds = build_dataset("text-corpus", {"corpora": [
        {"path": str(corpora / "manifest.csv"), "split": "sentence", "upsample": 3},
        {"path": str(corpora / "general.txt")},
        {"path": str(corpora / "notes.jsonl"), "split": "none"}]})
    # 3 reports -> 9 sentences, of which the third report's 3 repeat the first's; "short" is under min_chars
    assert ds.counts["manifest.csv"] == {"read": 9, "kept": 6, "mixed": 18}
    assert ds.counts["general.txt"] == {"read": 2, "kept": 2, "mixed": 2}
    assert ds.counts["notes.jsonl"] == {"read": 2, "kept": 1, "mixed": 1}  # "The breast is a gland." seen before
    assert len(ds) == 21 and len(ds.texts()) == 9
    texts = [ds.item(i, None)["text"] for i in range(len(ds))]
    assert texts.count("IMPRESSION: Suspicious for lung cancer.") == 3
    assert texts.count("Lung cancer is a common cancer.") == 1


def test_fractional_upsampling_is_seeded(corpora):
    opts = {"corpora": [{"path": str(corpora / "manifest.csv"), "upsample": 1.5}]}
    a, b = build_dataset("text-corpus", opts), build_dataset("text-corpus", opts)
    assert len(a) == 6 + 3 and list(a.order) == list(b.order)


def test_held_out_texts_never_enter_the_corpus(corpora):
    held = corpora / "heldout.txt"
    held.write_text("suspicious for LUNG cancer\nThe breast is a gland.\n")
    ds = build_dataset("text-corpus", {"corpora": [
        {"path": str(corpora / "manifest.csv"), "split": "none"}, {"path": str(corpora / "general.txt")},
        {"path": str(corpora / "notes.jsonl")}], "exclude": [{"path": str(held)}]})
    folded = [fold_text(t) for t in ds.texts()]
    assert len(folded) == 3  # the whole second report contains a held-out sentence; the gland sentence is out
    assert not any("suspicious for lung cancer" in t or t == "the breast is a gland." for t in folded)


def test_a_folder_and_the_bundled_graph_are_corpora(corpora):
    ds = build_dataset("text-corpus", {"corpora": [{"path": str(corpora)}]})
    assert len(ds.texts()) == 9
    graph = build_dataset("text-corpus", {"corpora": [{"format": "graph", "sources": ["doid_top_nodes"]}]})
    assert "pharyngeal neoplasm" in graph.texts() and len(graph) > 100
    assert any(t.startswith("pharynx cancer: A ") for t in graph.texts())


def test_bad_corpora_are_clear_errors(corpora):
    (corpora / "empty.txt").write_text("\n\nok\n")
    with pytest.raises(InputError, match="the corpus is empty"):
        build_dataset("text-corpus", {"corpora": [{"path": str(corpora / "empty.txt")}]})
    with pytest.raises(InputError, match="no column 'findings'"):
        build_dataset("text-corpus", {"corpora": [{"path": str(corpora / "manifest.csv"), "columns": ["findings"]}]})
    (corpora / "bad.jsonl").write_text('{"text": "fine text here"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        build_dataset("text-corpus", {"corpora": [{"path": str(corpora / "bad.jsonl")}]})
    with pytest.raises(InputError, match="corpus file not found"):
        build_dataset("text-corpus", {"corpora": [{"path": str(corpora / "missing.txt")}]})
    with pytest.raises(ConfigError, match="at least one corpus"):
        build_dataset("text-corpus", {"corpora": []})


def test_iu_test_split_sentences_never_enter_an_iu_corpus(tmp_path):
    from medvl.resources import shared_data_dir
    from medvl.tasks.report_classification import ReportClassificationSection, heldout_texts

    data = shared_data_dir()
    iu = data / "image_text" / "indiana_reports.csv" if data else None
    if iu is None or not iu.is_file():
        pytest.skip("needs /work/shared/data/image_text/indiana_reports.csv")
    held = [s for t in heldout_texts(ReportClassificationSection(reports=iu)) for s in split_sentences(t)]
    (tmp_path / "held.txt").write_text("\n".join(held) + "\n")
    ds = build_dataset("text-corpus", {"corpora": [{"path": str(iu), "columns": ["findings", "impression"]}],
                                       "exclude": [{"path": str(tmp_path / "held.txt")}], "exclude_match": "exact"})
    folded = {fold_text(t) for t in held}
    assert len(ds.texts()) > 1000 and not any(fold_text(t) in folded for t in ds.texts())
