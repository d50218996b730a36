"""Retrieval: a text or case query gives the top-k most similar cases with thumbnails and report excerpts."""

import streamlit as st

from medvl.apps import slideview, ui
from medvl.errors import MedvlError

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

mode = st.radio("Query", ["text", "case"], horizontal=True, key="rt_mode")
k = st.slider("Number of results (k)", 1, 20, 8, key="rt_k")
if mode == "text":
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

kinds = sorted(set(found.domains))
ui.notes([n for kind in kinds for n in slideview.model_notes(ui.load_space(model_dir), kind)])
hits = index.search(query, k=k + (1 if exclude else 0))[0]
if exclude:
    hits = hits[hits["case"] != exclude].head(k)
st.subheader(f"Top {len(hits)} of {len(found)} cases")


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
