"""Zero-shot diagnosis: a case and a disease set (a knowledge-graph node with its subtypes, or a custom list) give
ranked diagnoses with probabilities, abstention when uncertain, and each diagnosis's ontology context; a draft report
with codes and evidence regions, and the findings as a DICOM SR download."""

from pathlib import Path

import streamlit as st

from medvl.apps import diagnosis, report, slideview, ui
from medvl.errors import MedvlError

ui.page("Zero-shot diagnosis", "🧠")
ws, cat = ui.workspace_or_stop()
model_dir = ui.pick_model(cat, key="zs_model")
if model_dir is None:
    st.stop()
graph = ui.load_graph(ui.graph_path(cat))
try:
    found, _ = ui.cases(model_dir, str(ws))
except MedvlError as exc:
    ui.error(exc)
    st.stop()
if len(found) == 0:
    st.info("No cases this model can embed in the workspace.")
    st.stop()

options = list(range(len(found)))
pick = st.selectbox("Case", options, format_func=lambda i: f"{found.refs[i]} · {found.kinds[i]}", key="zs_case")
dset = ui.disease_set(graph, "zs_ds")
abstain = st.slider("Abstain below this probability", 0.05, 0.95, 0.5, 0.05, key="zs_abstain")
if dset is None:
    st.stop()

try:
    clf = ui.classifier(model_dir, ui.graph_path(cat), dset.ids, dset.free, abstain)
except MedvlError as exc:
    ui.error(exc)
    st.stop()
record = diagnosis.diagnose(clf, found.embeddings[pick], top_k=10)
ui.notes(slideview.model_notes(ui.load_space(model_dir), found.domains[pick]))

left, right = st.columns([1, 3])
with left:
    st.image(found.thumbnails[pick], caption=f"{found.refs[pick]} · {found.kinds[pick]}", width=200)
    ref = found.reference[pick]
    if ref is not None:
        name = graph.concept(ref).name if ref in graph else ref
        st.caption(f"Reference diagnosis (data set label): {name}")
with right:
    st.markdown(f"**Disease set:** {dset.label or 'custom'} · {dset.size} classes · temperature "
                f"{clf.temperature:.3g} (the model's learned logit scale)")
    if record["abstained"]:
        st.warning(f"Abstained: no diagnosis reaches {abstain:.0%} (best: {record['top'][0]['name']} "
                   f"{record['top'][0]['probability']:.0%}).", icon="🤔")
    else:
        note = " (backed off to a confident parent)" if record["backed_off"] else ""
        st.success(f"Diagnosis: **{record['name']}** — probability {record['probability']:.0%}{note}", icon="✅")
    st.dataframe(ui.as_rows([
        {"rank": r + 1, "diagnosis": t["name"], "id": t["id"], "probability": round(t["probability"], 4),
         "with subtypes": round(t["with_descendants"], 4)} for r, t in enumerate(record["top"])]),
        hide_index=True, width="stretch")

st.subheader("Ontology context")
for t in record["top"][:5]:
    ctx = diagnosis.ontology_context(graph, t["id"])
    with st.expander(f"{t['name']} — {t['probability']:.1%}", expanded=t is record["top"][0]):
        if ctx is None:
            st.write("Free-text class (not in the knowledge graph).")
            continue
        st.markdown(f"**{ctx['name']}** (`{ctx['id']}`, {ctx['source']})")
        st.markdown(f"*Definition:* {ctx['definition']}")
        st.markdown(f"*Ancestor path:* {ctx['path']}")
        st.markdown("*Synonyms:* " + (", ".join(ctx["synonyms"][:12]) or "none"))

st.subheader("Report (draft)")
st.caption(report.DRAFT_LABEL)
tiles, slide_path = None, found.paths[pick] if found.kinds[pick] == "H&E slide" else None
if slide_path is not None:
    try:
        features = cat.features_for(Path(slide_path))
        tiles = ui.slide_tiles(slide_path, model_dir, str(features) if features else None, str(cat.cache_dir))
    except MedvlError as exc:
        ui.error(exc)
finding = record["prediction"] or record["top"][0]["id"]
mpp = ui.open_slide(slide_path).mpp if slide_path is not None else None
draft = report.draft_report(record, graph, report.evidence_tiles(clf, tiles, finding, mpp=mpp))
st.dataframe(ui.as_rows([{"finding": f["name"], "id": f["id"], "code": f["code"] or "none",
                          "probability": round(f["probability"], 4)} for f in draft["findings"]]),
             hide_index=True, width="stretch")
if draft["evidence"]:
    st.caption("Evidence regions: the tiles that score highest for "
               f"{graph.concept(finding).name if finding in graph else finding} (level-0 pixels).")
st.code(report.report_text(draft), language=None)
try:
    modality = "slide" if slide_path is not None else "image"
    data = report.sr_bytes(record, graph, model_dir, found.refs[pick], modality)
    st.download_button("Download DICOM SR (TID 1500)", data, file_name=f"{found.refs[pick]}_sr.dcm",
                       mime="application/dicom", key="zs_sr")
except MedvlError as exc:
    st.error(f"No DICOM SR: {exc}")
