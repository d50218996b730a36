"""medvl apps: home page (workspace, what it holds, environment, bundled data)."""

import streamlit as st

import medvl
from medvl.apps import ui
from medvl.resources import BUNDLED, data_root

ui.page("medvl", "🩺")
st.markdown("Slide viewer · CT viewer · zero-shot diagnosis · retrieval · survival — pick a page in the sidebar.")

workspace = ui.workspace_picker()
st.subheader("Workspace")
if workspace is None or not workspace.is_dir():
    st.info("No workspace yet: run `medvl demo` to build one from the bundled data.")
else:
    st.write(f"`{workspace}`")
    rows = [
        {"folder": p.name, "files": sum(1 for q in p.rglob("*") if q.is_file())}
        for p in sorted(workspace.iterdir())
        if p.is_dir()
    ]
    st.table(rows)
    cat = ui.scan(str(workspace))
    if cat.empty:
        st.info(f"The workspace is empty: run `medvl demo --workspace {workspace}`.")
    else:
        st.table(cat.summary())

st.subheader("Environment")
st.write(f"medvl {medvl.__version__}")

st.subheader("Bundled data")
root = data_root()
st.write(f"`{root}`")
st.table([{"name": k, "file": v, "present": (root / v).is_file()} for k, v in BUNDLED.items()])
