"""Slide viewer: a deep-zoom view of a whole-slide image (pan and zoom from the whole slide to full resolution) with
tissue-mask, zero-shot heatmap, tile-boundary and annotation overlays; a clicked tile's classes and neighbours;
exports for QuPath (detections) and DICOM (SEG). Label and macro images stay hidden unless the user opts in."""

from pathlib import Path

import numpy as np
import streamlit as st

from medvl.apps import annotations, report, slideview, tilepanel, ui, viewerdata
from medvl.apps.catalog import pseudonym
from medvl.apps.components import deepzoom_viewer
from medvl.apps.uploads import save_upload, upload_limit_mb
from medvl.errors import MedvlError
from medvl.io.slide import PLAUSIBLE_MPP
from medvl.io.slide.slide import PRIVATE_ASSOCIATED
from medvl.tasks.interop.codes import code_concepts

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
    tissue = ui.tissue_overlay(path)
except MedvlError as exc:
    ui.error(exc)
    st.stop()

# ---------------------------------------------------------------- physical pixel size
mpp_override = None
if slide.mpp is None:
    st.warning(f"This slide's physical pixel size is unknown ({slide.mpp_problem}). Enter the level-0 µm per pixel "
               "(0.25 for a 40x scan, 0.5 for 20x) for the scale bar, the field of view and the heatmap.", icon="📏")
    mpp_override = st.number_input("Level-0 µm per pixel", min_value=PLAUSIBLE_MPP[0], max_value=PLAUSIBLE_MPP[1],
                                   value=None, step=0.01, format="%.4f", key="slide_mpp")
    if mpp_override is not None:
        slide = ui.open_slide(path, float(mpp_override))
mpp = slide.mpp
mpp_text = f"{mpp:.3f} µm/px" + (" (entered)" if mpp_override else "") if mpp else "unknown µm/px"
mag = f" · {slide.objective_power:g}x objective" if slide.objective_power else ""
st.caption(f"{pseudonym(Path(path), 'slide')} · {slide.dimensions[0]}×{slide.dimensions[1]} px · "
           f"{slide.level_count} level(s) · {mpp_text}{mag} · read with {slide.backend}")

# ---------------------------------------------------------------- controls
side = st.sidebar
model_dir = ui.pick_model(cat, key="slide_model")
side.subheader("Overlays")
show_tissue = side.checkbox("Tissue mask", True, key="slide_tissue")
show_heat = side.checkbox("Zero-shot heatmap", True, key="slide_heat", disabled=model_dir is None)
show_bounds = side.checkbox("Tile boundaries", False, key="slide_bounds", disabled=model_dir is None)
opacity = side.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="slide_opacity")
ann_files = cat.annotations_for(Path(path)) if source == "from the workspace" else []
show_ann = side.checkbox("Annotations (GeoJSON)", bool(ann_files), key="slide_ann")
ann_upload = side.file_uploader("Annotation GeoJSON (level-0 pixels)", type=["geojson", "json"], key="slide_ann_up")

tiles = clf = proba = None
heat_class = None
graph = None
if model_dir is not None:
    graph = ui.load_graph(ui.graph_path(cat))
    with st.expander("Heatmap classes", expanded=False):
        dset = ui.disease_set(graph, "slide_ds", default_node="breast cancer")
    if mpp is None:
        st.info("The heatmap and tile classes need the slide's µm per pixel: enter it above.")
    elif dset is not None:
        try:
            tiles = ui.slide_tiles(path, model_dir, str(features) if features else None, str(cat.cache_dir),
                                   mpp_override)
            clf = ui.classifier(model_dir, ui.graph_path(cat), dset.ids, dset.free, None)
        except MedvlError as exc:
            ui.error(exc)
    if tiles is not None:
        ui.notes(tiles.warnings)  # the model's training domain is not slides; random weights
    if tiles is not None and clf is not None:
        proba = clf.predict_proba(tiles.embeddings)
        from medvl.tasks.zeroshot.slide import slide_zeroshot

        default_cls = int(np.argmax(slide_zeroshot(tiles.embeddings, clf, "topk", topk=16).proba))
        heat_class = side.selectbox("Heatmap class", list(range(len(clf.class_ids))), index=default_cls,
                                    format_func=lambda i: clf.names[i], key="slide_heat_class")

# ---------------------------------------------------------------- overlays
shapes = []
if show_ann:
    try:
        for p in ann_files:
            shapes += annotations.shapes_for_viewer(annotations.load_geojson(p, "workspace annotations"),
                                                    slide.dimensions, "workspace annotations")
        if ann_upload is not None:
            shapes += annotations.shapes_for_viewer(annotations.load_geojson(ann_upload.getvalue(), "uploaded file"),
                                                    slide.dimensions, "uploaded annotations")
    except MedvlError as exc:
        ui.error(exc)
layer = legend = None
if tiles is not None:
    scores = proba[:, heat_class] if (show_heat and heat_class is not None) else None
    vmin, vmax = (0.0, 1.0) if scores is None else (float(scores.min()), float(scores.max()))
    layer = viewerdata.TileLayer(tiles.coords, tiles.patch_size_level0, scores, vmin, vmax, opacity, show_bounds)
    if scores is not None:
        legend = viewerdata.heat_legend(f"p({clf.names[heat_class]})", vmin, vmax)

# a click in the viewer (its last value, kept under its key) selects the tile under it
box = None
if tiles is not None:
    n = len(tiles.coords)
    if not 0 <= st.session_state.get("slide_tile", -1) < n:  # a new slide, or nothing chosen yet: the top tile
        st.session_state["slide_tile"] = int(np.argmax(proba[:, heat_class]))
    clicked = st.session_state.get("slide_view")
    if clicked and clicked.get("id") != st.session_state.get("slide_click_id"):
        st.session_state["slide_click_id"] = clicked["id"]
        hit = viewerdata.tile_at(tiles.coords, tiles.patch_size_level0, clicked["x"], clicked["y"])
        if hit is None:
            st.info(f"No tissue tile at ({clicked['x']}, {clicked['y']}): click on a tile of the grid.")
        else:
            st.session_state["slide_tile"] = hit
    x, y = tiles.coords[st.session_state["slide_tile"]]
    box = (float(x), float(y), float(x + tiles.patch_size_level0), float(y + tiles.patch_size_level0))

url, token = ui.tile_endpoint()
deepzoom_viewer(viewerdata.viewer_args(
    tile_url=url, token=token, path=str(Path(path).resolve()), dimensions=slide.dimensions, mpp=mpp,
    objective=slide.objective_power, tissue=tissue if show_tissue else None, tissue_opacity=0.6 * opacity,
    tiles=layer, shapes=shapes, legend=legend, selected=box), key="slide_view")
if legend is not None:
    st.caption(f"Heatmap: probability of **{clf.names[heat_class]}** per tile, from {legend['vmin']:.2f} (dark) to "
               f"{legend['vmax']:.2f} (bright); {tiles.source}.")

# ---------------------------------------------------------------- associated images (private by default)
with st.sidebar.expander("Associated images", expanded=False):
    st.caption("This slide has: " + (", ".join(slide.associated) or "none") + ". Label and macro images may show "
               "patient names and barcodes.")
    private = [n for n in slide.associated if n in PRIVATE_ASSOCIATED]
    show_private = st.checkbox("Show label and macro images", False, key="slide_show_private", disabled=not private)
if show_private:
    for name in private:
        st.image(slide.associated_image(name, allow_private=True), caption=f"{name} image (shown at your request)",
                 width=240)

# ---------------------------------------------------------------- the clicked tile
if tiles is None or clf is None:
    st.stop()
st.subheader("Export")
ref = pseudonym(Path(path), "slide")
export_left, export_right = st.columns(2)
export_left.download_button("QuPath detections (GeoJSON)", lambda: report.qupath_bytes(clf, tiles),
                            file_name=f"{ref}_detections.geojson", mime="application/geo+json", key="slide_qupath")
heat_id = clf.class_ids[heat_class]
try:
    code_concepts(graph, [(heat_id, clf.names[heat_class])])
    export_right.download_button(f"DICOM SEG (tissue, {clf.names[heat_class]} ≥ 0.5)",
                                 lambda: report.slide_seg_zip(slide, clf, tiles, [heat_id], graph),
                                 file_name=f"{ref}_seg.zip", mime="application/zip", key="slide_seg")
except MedvlError as exc:
    export_right.error(f"No DICOM SEG: {exc}")
st.subheader("Selected tile")
index = st.number_input(f"Tile (click one in the viewer, or type its number: 0–{len(tiles.coords) - 1})", 0,
                        len(tiles.coords) - 1, key="slide_tile")
answer = tilepanel.answer_tile(clf, graph, tiles.coords, tiles.patch_size_level0, tiles.embeddings, int(index))
x0, y0, x1, y1 = answer.box
left, right = st.columns([1, 3])
with left:
    st.image(tilepanel.tile_image(slide, (x0, y0), tiles.patch_size_level0), width=160)
    size_um = f" ({(x1 - x0) * mpp:.0f} µm)" if mpp else ""
    st.caption(f"Tile {answer.index}: level-0 x {int(x0)}–{int(x1)}, y {int(y0)}–{int(y1)}{size_um}")
with right:
    top = answer.record["top"]
    st.dataframe(ui.as_rows([{"rank": r + 1, "class": t["name"], "id": t["id"],
                              "probability": round(t["probability"], 4)} for r, t in enumerate(top)]),
                 hide_index=True, width="stretch")
    for t, ctx in zip(top, answer.context, strict=False):
        with st.expander(f"{t['name']} — {t['probability']:.1%}", expanded=t is top[0]):
            if ctx is None:
                st.write("Free-text class (not in the knowledge graph).")
                continue
            st.markdown(f"**{ctx['name']}** (`{ctx['id']}`, {ctx['source']}) · *Ancestor path:* {ctx['path']}")
            st.markdown(f"*Definition:* {ctx['definition']}")
            st.markdown("*Synonyms:* " + (", ".join(ctx["synonyms"][:12]) or "none"))

st.subheader("Most similar tiles on this slide")
near = tilepanel.nearest_tiles(tiles.embeddings, answer.index, k=5)
for col, (j, sim) in zip(st.columns(max(1, len(near))), near, strict=False):
    col.image(tilepanel.tile_image(slide, tuple(tiles.coords[j]), tiles.patch_size_level0, 128),
              caption=f"tile {j} · {sim:.3f}")

st.subheader("Nearest cases to the tile")
found, index_ = ui.cases(model_dir, str(ws))
if index_ is None:
    st.info("No cases to compare with in this workspace.")
else:
    mix = st.checkbox("Include cases of other kinds (modality, stain, organ)", False, key="slide_mix")
    try:
        hits = tilepanel.nearest_cases(found, index_, tiles.embeddings[answer.index], pseudonym(Path(path), "slide"),
                                       kind="H&E slide", mix=mix)
    except MedvlError as exc:
        ui.error(exc)
        hits = []
    if not hits:
        st.info("No other H&E slide in the case collection; tick “Include cases of other kinds” to compare across "
                "kinds.")
    for col, hit in zip(st.columns(max(1, len(hits))), hits, strict=False):
        col.image(hit["thumbnail"], caption=f"{hit['case']} · {hit['kind']} · {hit['score']:.3f}")
