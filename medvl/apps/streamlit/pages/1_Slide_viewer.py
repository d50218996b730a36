"""Slide viewer: overview and zoomable region of a whole-slide image, tissue mask and zero-shot heatmap overlays,
tile scores and nearest cases of the region."""

from pathlib import Path

import numpy as np
import streamlit as st

from medvl.apps import slideview, ui
from medvl.apps.catalog import pseudonym
from medvl.apps.uploads import save_upload, upload_limit_mb
from medvl.errors import MedvlError

ui.page("Slide viewer", "🔬")
ws, cat = ui.workspace_or_stop()

source = st.radio("Slide", ["from the workspace", "upload a slide"], horizontal=True, key="slide_source")
features = None
if source == "from the workspace":
    if not cat.slides:
        st.info("This workspace has no slides (`slides/`); upload one instead.")
        st.stop()
    labels = {pseudonym(p, "slide"): p for p in cat.slides}
    chosen = labels[st.selectbox("Workspace slide", list(labels), key="slide_pick")]
    path, features = str(chosen), cat.features_for(chosen)
else:
    up = st.file_uploader(f"Slide file (at most {upload_limit_mb():g} MB)", type=[s.lstrip(".") for s in
                          slideview.SLIDE_SUFFIXES], key="slide_upload")
    if up is None:
        st.info("Choose a slide file to upload.")
        st.stop()
    try:
        path = str(save_upload(up.name, up.getvalue(), slideview.SLIDE_SUFFIXES))
    except MedvlError as exc:
        ui.error(exc)
        st.stop()

try:
    slide = ui.open_slide(path)
    thumb = ui.slide_thumbnail(path, 1024)
    mask = ui.tissue_mask(path)
except MedvlError as exc:
    ui.error(exc)
    st.stop()

mpp = f"{slide.mpp:.3f} µm/px" if slide.mpp else "unknown µm/px"
st.caption(f"{pseudonym(Path(path), 'slide')} · {slide.dimensions[0]}×{slide.dimensions[1]} px · "
           f"{slide.level_count} level(s) · {mpp} · read with {slide.backend}")

# ---------------------------------------------------------------- controls
side = st.sidebar
model_dir = ui.pick_model(cat, key="slide_model")
side.subheader("View")
level = side.selectbox("Pyramid level", list(range(slide.level_count)), key="slide_level",
                       format_func=lambda i: f"{i} (downsample {slide.level_downsamples[i]:.3g})")
size = side.select_slider("Region size (px)", [256, 384, 512, 768, 1024], value=512, key="slide_size")
cx = side.slider("Horizontal position (%)", 0, 100, 50, key="slide_x")
cy = side.slider("Vertical position (%)", 0, 100, 50, key="slide_y")
side.subheader("Overlays")
show_tissue = side.checkbox("Tissue mask", True, key="slide_tissue")
show_heat = side.checkbox("Zero-shot heatmap", True, key="slide_heat", disabled=model_dir is None)
opacity = side.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="slide_opacity")

tiles = clf = scores = None
heat_class = None
if model_dir is not None:
    graph = ui.load_graph(ui.graph_path(cat))
    with st.expander("Heatmap classes", expanded=False):
        dset = ui.disease_set(graph, "slide_ds", default_node="breast cancer")
        abst = None
    if dset is not None:
        try:
            tiles = ui.slide_tiles(path, model_dir, str(features) if features else None, str(cat.cache_dir))
            clf = ui.classifier(model_dir, ui.graph_path(cat), dset.ids, dset.free, abst)
        except MedvlError as exc:
            ui.error(exc)
    if tiles is not None:
        ui.notes(tiles.warnings)  # the model's training domain is not slides; random weights
    if tiles is not None and clf is not None:
        proba = clf.predict_proba(tiles.embeddings)
        from medvl.tasks.zeroshot.slide import slide_zeroshot

        slide_pred = slide_zeroshot(tiles.embeddings, clf, "topk", topk=16)
        default_cls = int(np.argmax(slide_pred.proba))
        heat_class = side.selectbox("Heatmap class", list(range(len(clf.class_ids))), index=default_cls,
                                    format_func=lambda i: clf.names[i], key="slide_heat_class")
        scores = proba[:, heat_class]

region = slideview.region_at(slide, level, (cx / 100, cy / 100), size)
overlays = slideview.Overlays(
    tissue=mask, coords=None if tiles is None else tiles.coords, scores=scores,
    patch_size_level0=0.0 if tiles is None else tiles.patch_size_level0, opacity=opacity,
    show_tissue=show_tissue, show_heatmap=show_heat and scores is not None,
    vmin=0.0 if scores is None else float(scores.min()), vmax=1.0 if scores is None else float(scores.max()),
)

left, right = st.columns([2, 3])
with left:
    st.subheader("Overview")
    st.image(slideview.render_overview(slide, thumb, overlays, region), width="stretch")
    if scores is not None:
        st.caption(f"Heatmap: probability of **{clf.names[heat_class]}** per tile, from {scores.min():.2f} (dark) "
                   f"to {scores.max():.2f} (bright); {tiles.source}.")
with right:
    st.subheader("Region")
    x0, y0, x1, y1 = region.box_level0
    st.caption(f"Region: level {region.level}, level-0 box x {int(x0)}–{int(x1)}, y {int(y0)}–{int(y1)} "
               f"({region.width}×{region.height} px at this level)")
    try:
        st.image(slideview.render_region(slide, region, overlays), width="stretch")
    except MedvlError as exc:
        ui.error(exc)

if tiles is not None and clf is not None:
    st.subheader("Tiles in the region")
    inside = slideview.tiles_in_box(tiles.coords, tiles.patch_size_level0, region.box_level0)
    if len(inside) == 0:
        st.info("No tissue tiles in this region: move the region over tissue.")
    else:
        sub = proba[inside]
        best = sub.argmax(axis=1)
        st.dataframe(ui.as_rows([
            {"tile": int(i), "x": int(tiles.coords[i, 0]), "y": int(tiles.coords[i, 1]),
             "top class": clf.names[b], "probability": round(float(p[b]), 3),
             f"p({clf.names[heat_class]})": round(float(p[heat_class]), 3)}
            for i, b, p in zip(inside, best, sub, strict=True)]), hide_index=True, width="stretch")
        st.markdown(f"**{len(inside)} tiles**; region mean: "
                    + ", ".join(f"{clf.names[j]} {v:.2f}" for j, v in
                                sorted(enumerate(sub.mean(axis=0)), key=lambda t: -t[1])[:3]))
        st.subheader("Nearest cases to the region")
        found, index = ui.cases(model_dir, str(ws))
        if index is None:
            st.info("No cases to compare with in this workspace.")
        else:
            query = tiles.embeddings[inside].mean(axis=0, keepdims=True)
            hits = index.search(query, k=6)[0]
            own = pseudonym(Path(path), "slide")
            hits = hits[hits["case"] != own].head(5)
            cols = st.columns(max(1, len(hits)))
            for col, (_, hit) in zip(cols, hits.iterrows(), strict=False):
                i = found.index_of(hit["case"])
                col.image(found.thumbnails[i], caption=f"{hit['case']} · {hit['kind']} · {hit['score']:.3f}")
