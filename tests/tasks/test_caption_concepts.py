"""Caption -> concept retrieval: CUIs mapped through the Disease Ontology's UMLS xrefs, recall@k, bad input."""

from __future__ import annotations

import pytest

from medvl.errors import InputError
from medvl.knowledge import BuildConfig, cached_graph
from medvl.tasks.caption_concepts import CaptionConceptSection, caption_queries, eval_caption_concepts


@pytest.fixture
def roco(tmp_path):
    """Files in the ROCO format: ``id<TAB>caption`` and ``id<TAB>CUI<TAB>CUI...``, CUIs of real DO xrefs."""
    graph = cached_graph(BuildConfig(sources=["doid_top_nodes"]))
    lung = graph.concept("DOID:1324")
    cui = lung.xrefs["UMLS"][0]
    (tmp_path / "captions.txt").write_text(
        "R1\t CT showing lung cancer in the right lobe.\nR2\t Axial MRI.\nR3\t Chest film with lung cancer.\n"
    )
    (tmp_path / "cuis.txt").write_text(f"R1\t\tC0000000\t{cui}\nR2\t\tC0000001\nR3\t{cui}\n")
    return tmp_path


def test_captions_with_a_mapped_cui_are_queries_and_recall_is_measured(roco):
    sec = CaptionConceptSection(captions=roco / "captions.txt", cuis=roco / "cuis.txt", sources=["doid_top_nodes"])
    texts, relevant, names = caption_queries(sec)
    assert texts == ["CT showing lung cancer in the right lobe.", "Chest film with lung cancer."]
    assert all(names[i] == "lung cancer" for rel in relevant for i in rel)
    from medvl.models import create_model
    from medvl.models.multimodal import ModelConfig

    model = create_model(
        ModelConfig.from_dict({"towers": {"text": {"name": "hf-text-tiny"}}, "embed_dim": 16}), random_weights=True
    )
    result = eval_caption_concepts(sec, model=model)
    assert result["queries"] == 2 and result["concepts"] == len(names)
    assert 0 <= result["metrics"]["r@1"] <= result["metrics"]["r@5"] <= 1


def test_files_without_a_known_cui_or_in_another_format_are_clear_errors(roco):
    (roco / "none.txt").write_text("R1\tC0000000\n")
    with pytest.raises(InputError, match="no caption has a CUI"):
        caption_queries(
            CaptionConceptSection(captions=roco / "captions.txt", cuis=roco / "none.txt", sources=["doid_top_nodes"])
        )
    (roco / "bad.txt").write_text("R1 C0000000\n")
    with pytest.raises(InputError, match="line 1: expected an id, a tab"):
        caption_queries(
            CaptionConceptSection(captions=roco / "captions.txt", cuis=roco / "bad.txt", sources=["doid_top_nodes"])
        )
