"""medvl apps: home page (workspace, environment, bundled data)."""

import os
from pathlib import Path

import streamlit as st

import medvl
from medvl.resources import BUNDLED, project_root

st.set_page_config(page_title="medvl", layout="wide")
st.title("medvl")
st.warning("Research software. The demo models are not for clinical use.", icon="⚠️")

workspace = Path(os.environ.get("MEDVL_WORKSPACE", "")) if os.environ.get("MEDVL_WORKSPACE") else None
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

st.subheader("Environment")
st.write(f"medvl {medvl.__version__}")

st.subheader("Bundled data")
st.table([{"name": k, "file": v, "present": (project_root() / v).is_file()} for k, v in BUNDLED.items()])
