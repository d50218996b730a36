"""Held-out synonyms for synonym linking: the split is seeded, and no held-out query (or a folded form of it) reaches
the training texts, neither from the concept's own group nor from the extra sources."""

from __future__ import annotations

from medvl.knowledge import BuildConfig, cached_graph
from medvl.knowledge.linking import add_linked_texts, hold_out_synonyms, leak_key


def _split(seed: int = 3):
    graph = cached_graph(BuildConfig(sources=["doid_cancer_slim"]))
    return hold_out_synonyms(graph.groups(source="DOID"), seed=seed)


def test_held_out_synonyms_never_reach_training():
    split = _split()
    assert len(split.queries) > 100
    texts = {cid: set(t) for cid, t in zip(split.ids, split.texts, strict=True)}
    for held, cid in split.queries:
        assert held not in texts[cid]
        assert not any(t.startswith(held + ", ") for t in texts[cid])
        assert leak_key(held) not in {leak_key(t.split(", ")[0]) for t in texts[cid]}
    assert _split().queries == split.queries and _split(seed=4).queries != split.queries


def test_without_holdout_every_text_stays():
    graph = cached_graph(BuildConfig(sources=["doid_cancer_slim"]))
    groups = graph.groups(source="DOID")
    split = hold_out_synonyms(groups, holdout=False)
    assert split.queries == [] and split.texts == [list(g.texts) for g in groups]


def test_leak_key_folds_case_plural_spelling_and_qualifiers():
    assert leak_key("Malignant Tumours of the Breast (disorder)") == leak_key("malignant tumour of the breast")
    assert leak_key("Fructosaemia") == leak_key("fructosemia")
    assert leak_key("Cor pulmonale NOS") == leak_key("cor pulmonale")
    assert leak_key("Gilbert's disease") == leak_key("gilbert s disease")
    assert leak_key("breast cancer") != leak_key("lung cancer")


def test_extra_source_texts_never_equal_a_held_out_query():
    split = _split()
    before = [list(t) for t in split.texts]
    # doid_ncit repeats the slim's synonyms, so the extra graph does contain the held-out strings themselves
    extra = cached_graph(BuildConfig(sources=["doid_cancer_slim", "doid_ncit", "oncotree"]))
    held = {leak_key(q) for q, _ in split.queries}
    assert any(leak_key(s.text) in held for c in extra for s in c.synonyms)
    added = add_linked_texts(split, extra)
    new = [t for old, now in zip(before, split.texts, strict=True) for t in now[len(old):]]
    assert added == len(new) > 50
    assert not [t for t in new if leak_key(t) in held]
    for held_text, cid in split.queries:
        assert leak_key(held_text) not in {leak_key(t) for t in split.texts[split.ids.index(cid)]}, cid
