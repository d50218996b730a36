"""Retrieval: a text or case query gives the top-k most similar cases with thumbnails and report excerpts.

Results are cases of one kind (the query case's modality, stain and organ, or the kind chosen for a text query);
mixing kinds is an explicit choice."""

import streamlit as st

from medvl.apps import slideview, ui
from medvl.apps.cases import kind_of
from medvl.errors import MedvlError
from medvl.tasks.retrieval.kinds import matching_rows, search_kind

ui.page("Retrieval", "🔎")
ws, cat = ui.workspace_or_stop()
model_dir = ui.pick_model(cat, key="rt_model")
if model_dir is None:
    st.stop()
graph = ui.load_graph(ui.graph_path(cat))
try:
    found, index = ui.cases(model_dir, str(ws))
except MedvlError as exc:
    ui.error(exc)
    st.stop()
if index is None:
    st.info("No cases this model can embed in the workspace.")
    st.stop()

MIXED = "all kinds (mixed)"
mode = st.radio("Query", ["text", "case"], horizontal=True, key="rt_mode")
k = st.slider("Number of results (k)", 1, 20, 8, key="rt_k")
present = sorted(set(found.kinds), key=lambda kd: -found.kinds.count(kd))
if mode == "text":
    among = st.selectbox("Search among", [*present, MIXED], key="rt_kind")
    text = st.text_input("Describe what you look for", "ultrasound of a malignant breast tumour", key="rt_text")
    if not text.strip():
        st.info("Type a query.")
        st.stop()
    query, exclude = ui.load_space(model_dir).encode_text([text.strip()]), None
    st.caption(f"Text query: “{text.strip()}”")
else:
    pick = st.selectbox("Query case", list(range(len(found))),
                        format_func=lambda i: f"{found.refs[i]} · {found.kinds[i]}", key="rt_case")
    st.image(found.thumbnails[pick], caption=f"query: {found.refs[pick]}", width=140)
    query, exclude = found.embeddings[pick:pick + 1], found.refs[pick]
    mix = st.checkbox("Include cases of other kinds (modality, stain, organ)", False, key="rt_mix")
    among = MIXED if mix else found.kinds[pick]

kinds = sorted(set(found.domains))
ui.notes([n for kind in kinds for n in slideview.model_notes(ui.load_space(model_dir), kind)])
kind = None if among == MIXED else kind_of(among)
try:
    hits = search_kind(index, query, k + (1 if exclude else 0), [kind], mix=among == MIXED)[0]
except MedvlError as exc:
    ui.error(exc)
    st.stop()
if exclude:
    hits = hits[hits["case"] != exclude].head(k)
pool = len(found) if kind is None else int(matching_rows(index.metadata, kind).sum())
st.subheader(f"Top {len(hits)} of {pool} {'' if kind is None else among + ' '}cases")
if hits.empty:
    st.info(f"No other {among} case in this collection; tick “Include cases of other kinds” to compare across kinds.")


def excerpt(i: int) -> str:
    report = found.reports[i]
    if report:
        return report[:240] + ("…" if len(report) > 240 else "")
    ref = found.reference[i]
    if ref is None:
        return "No report or reference label for this case."
    if ref in graph:
        c = graph.concept(ref)
        return f"Reference label: {c.name}. {c.definition[:160]} (this data set has no report text)"
    return f"Reference label: {ref}."


per_row = 4
rows = [hits.iloc[i:i + per_row] for i in range(0, len(hits), per_row)]
for chunk in rows:
    cols = st.columns(per_row)
    for col, (_, hit) in zip(cols, chunk.iterrows(), strict=False):
        i = found.index_of(hit["case"])
        with col:
            st.image(found.thumbnails[i], width="stretch")
            st.markdown(f"**#{int(hit['rank'])} {hit['case']}** · {hit['kind']} · similarity {hit['score']:.3f}")
            st.caption(excerpt(i))
