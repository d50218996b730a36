"""ICD-10-CM codes, hierarchy and inclusion terms from the ``simple-icd-10-cm`` package."""

from __future__ import annotations

from medvl.errors import require
from medvl.knowledge.concept import Concept, Synonym

PREFIX = "ICD10CM"


def read_icd10cm(include_extensions: bool = False, chapters: list[str] | None = None) -> list[Concept]:
    """Every ICD-10-CM chapter, block, category and subcategory as a concept ``ICD10CM:<code>``.

    Args:
        include_extensions: also add the 7th-character extensions (encounter types such as ``S72.001A``; about
            51,000 codes that name the same condition as their parent).
        chapters: keep only these chapter numbers (``["2"]`` for neoplasms); all when ``None``.

    Returns:
        Concepts with the ICD description as name, inclusion terms as RELATED synonyms and the parent code.
    """
    icd = require("simple_icd_10_cm", feature="ICD-10-CM concepts")
    concepts = []
    for code in icd.get_all_codes(True):
        if not include_extensions and icd.is_extended_subcategory(code):
            continue
        if chapters is not None and (code if icd.is_chapter(code) else icd.get_ancestors(code)[-1]) not in chapters:
            continue
        name = icd.get_description(code).strip()
        parent = "" if icd.is_chapter(code) else icd.get_parent(code)
        seen = {name.lower()}
        synonyms = []
        for term in icd.get_inclusion_term(code):
            term = " ".join(term.split())
            if term and term.lower() not in seen:
                seen.add(term.lower())
                synonyms.append(Synonym(term, "RELATED"))
        concepts.append(
            Concept(
                id=f"{PREFIX}:{code}",
                name=name,
                synonyms=synonyms,
                parents=[f"{PREFIX}:{parent}"] if parent else [],
                source=PREFIX,
                origin=f"simple_icd_10_cm:{code}",
            )
        )
    return concepts
