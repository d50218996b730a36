"""CT viewer: axial, coronal and sagittal slices with window presets or custom level/width, label-map overlay,
spacing-correct proportions, the model's input box in place (and as a DICOM SEG download), and missing slices shown
where they belong."""

from pathlib import Path

import streamlit as st

from medvl.apps import ctcrop, ctview, report, ui
from medvl.apps.catalog import pseudonym
from medvl.apps.uploads import save_upload, upload_limit_mb
from medvl.errors import MedvlError
from medvl.radiology.transforms import WINDOW_PRESETS

ui.page("CT viewer", "🩻")
ws, cat = ui.workspace_or_stop()

source = st.radio("Volume", ["from the workspace", "upload a NIfTI"], horizontal=True, key="ct_source")
labels = None
if source == "from the workspace":
    if not cat.cts:
        st.info("This workspace has no CT volumes (`ct/`); upload one instead.")
        st.stop()
    names = {pseudonym(p, "ct"): p for p in cat.cts}
    chosen = names[st.selectbox("Workspace CT", list(names), key="ct_pick")]
    path = str(chosen)
    paired = cat.labels_for(chosen)
    if paired is not None and st.checkbox("Load its label map", True, key="ct_use_labels"):
        labels = str(paired)
else:
    up = st.file_uploader(f"CT volume (.nii / .nii.gz, at most {upload_limit_mb():g} MB)", type=["nii", "gz"],
                          key="ct_upload")
    if up is None:
        st.info("Choose a NIfTI file to upload.")
        st.stop()
    try:
        path = str(save_upload(up.name, up.getvalue(), ctview.CT_SUFFIXES))
    except MedvlError as exc:
        ui.error(exc)
        st.stop()

try:
    vol = ui.view_volume(path, labels)
except MedvlError as exc:
    ui.error(exc)
    st.stop()

for note in vol.warnings:
    st.warning(f"{note}" + (" — shown as violet bands at their true positions" if any(vol.missing) and
                            note.startswith("missing slices") else ""), icon="🩻")
sx, sy, sz = vol.spacing
st.caption(f"{pseudonym(Path(path), 'ct')} · {vol.shape[0]}×{vol.shape[1]}×{vol.shape[2]} voxels · spacing "
           f"{sx:.2f} × {sy:.2f} × {sz:.2f} mm (x, y, z, RAS) · HU {vol.array.min():.0f} … {vol.array.max():.0f}"
           + (" · label map loaded" if vol.labels is not None else ""))

side = st.sidebar
side.subheader("Window")
presets = [*WINDOW_PRESETS, "custom"]
preset = side.selectbox("Preset", presets, index=0, key="ct_preset")
if preset == "custom":
    level = side.slider("Level (HU)", -1200, 2000, 40, 10, key="ct_level")
    width = side.slider("Width (HU)", 1, 4000, 400, 10, key="ct_width")
else:
    level, width = WINDOW_PRESETS[preset]
side.caption(f"level {level:g} HU, width {width:g} HU")
side.subheader("Labels")
show_labels = side.checkbox("Label overlay", vol.labels is not None, key="ct_show_labels",
                            disabled=vol.labels is None)
alpha = side.slider("Label opacity", 0.0, 1.0, 0.4, 0.05, key="ct_alpha")

side.subheader("Model input")
options = ctcrop.find_preprocessings(cat.root / "volumes")
crop = None
if not options:
    side.caption("No preprocessed CT in this workspace (`medvl ct preprocess`/`embed` caches them in `volumes/`).")
else:
    embedded = ctcrop.embedding_preprocessings(cat.root)
    names = ["none", *(ctcrop.describe(cfg) + (" · used for the CT embeddings" if cfg.fingerprint() in embedded
                                                else "") for _, cfg in options)]
    default = next((i + 1 for i, (_, cfg) in enumerate(options) if cfg.fingerprint() in embedded), 1)
    pick = side.selectbox("Show the box the model saw", names, index=default, key="ct_crop")
    if pick != "none":
        folder, cfg = options[names.index(pick) - 1]
        try:
            crop = ui.ct_model_input(path, labels, str(folder))
        except MedvlError as exc:
            ui.error(exc)
    if crop is not None:
        side.caption(f"{'×'.join(map(str, crop.shape))} voxels of "
                     + " × ".join(f"{s:g}" for s in crop.spacing) + " mm "
                     + ("(from the workspace cache)" if crop.cached else "(the chain run for this view)"))
        side.download_button("DICOM SEG of this box (with its source series)",
                             lambda: report.ct_seg_zip(path, cfg, labels), file_name=f"{pseudonym(Path(path), 'ct')}"
                             "_seg.zip", mime="application/zip", key="ct_seg")

cols = st.columns(3)
for col, plane in zip(cols, ctview.PLANES, strict=True):
    n = vol.n_slices(plane)
    with col:
        st.subheader(plane.capitalize())
        index = st.slider(f"{plane} slice", 0, n - 1, n // 2, key=f"ct_{plane}")
        box = None if crop is None else ctcrop.plane_rect(crop.bounds, vol.shape, plane, index)
        img = ctview.render_plane(vol, plane, index, level, width, show_labels, alpha, width_px=360, box=box)
        st.image(img, width="stretch")
        gap = " · missing from the series" if ctview.is_missing(vol, plane, index) else ""
        st.caption(f"{plane} {index + 1}/{n}{gap}")
        present = ctview.labels_in_slice(vol, plane, index) if show_labels else []
        if present:
            st.dataframe(ui.as_rows(present).drop(columns=["colour"]), hide_index=True, height=160,
                         width="stretch")
