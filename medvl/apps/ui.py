"""Streamlit glue shared by the pages: header with the clinical-use notice, the workspace picker, cached loaders.

Only the pages import this module (it imports Streamlit). Models, the knowledge graph, case embeddings, indexes and
fitted survival models are loaded once per server with ``st.cache_resource`` and shared by every session; derived
images and small tables use ``st.cache_data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from medvl.apps import catalog as catalog_mod
from medvl.apps import roots as roots_mod
from medvl.errors import InputError, MedvlError

NOTICE = "Research software. The demo models are not for clinical use."
WS_KEY = "medvl_workspace"
TOKEN_KEY = "medvl_tile_token"


def page(title: str, icon: str = "🔬") -> None:
    """Page config, title and the notice every page shows."""
    st.set_page_config(page_title=f"medvl · {title}", page_icon=icon, layout="wide")
    st.title(title)
    st.warning(NOTICE, icon="⚠️")


def workspace_picker() -> Path | None:
    """Sidebar workspace choice, confined to the configured roots; the choice is kept across pages."""
    roots = roots_mod.app_roots()
    found = roots_mod.find_workspaces(roots)
    current = st.session_state.get(WS_KEY)
    if current is None:
        default = roots_mod.default_workspace(roots)
        current = str(default) if default else None
    st.sidebar.header("Workspace")
    if not roots:
        st.sidebar.info("No workspace roots configured: run `medvl demo` or `medvl app --workspace DIR`.")
        return None
    options = [str(p) for p in found]
    if current and current not in options:
        options.insert(0, current)
    if options:
        choice = st.sidebar.selectbox("Workspace", options, index=options.index(current) if current else 0,
                                      key="ws_select")
        current = choice
    typed = st.sidebar.text_input("Other workspace (inside the allowed roots)", key="ws_typed")
    if typed:
        try:
            current = str(roots_mod.resolve_in_roots(typed, roots))
        except InputError as exc:
            st.sidebar.error(str(exc))
    st.session_state[WS_KEY] = current
    st.sidebar.caption("Allowed roots: " + ", ".join(f"`{r}`" for r in roots))
    return Path(current) if current else None


def workspace_or_stop() -> tuple[Path, catalog_mod.Catalog]:
    """The chosen workspace and its catalogue; a clear message and ``st.stop()`` when there is none or it is empty."""
    ws = workspace_picker()
    if ws is None or not ws.is_dir():
        st.info("No workspace yet: run `medvl demo` to build one from the bundled data.")
        st.stop()
    cat = scan(str(ws))
    if cat.empty:
        st.info(f"The workspace `{ws}` is empty: run `medvl demo --workspace {ws}` or add slides, CT volumes and "
                "models to it.")
        st.stop()
    return ws, cat


def error(exc: BaseException) -> None:
    """Show a user-facing error (message only, no traceback); the app keeps running."""
    st.error(str(exc) if isinstance(exc, MedvlError) else f"{type(exc).__name__}: {exc}", icon="🚫")


# ------------------------------------------------------------------------------------------------ cached loaders
@st.cache_data(ttl=60, show_spinner=False)
def scan(root: str) -> catalog_mod.Catalog:
    return catalog_mod.scan_workspace(root)


@st.cache_resource(show_spinner="Loading the model…")
def load_space(model_dir: str):
    import torch

    from medvl.tasks.space import JointSpace

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    # a checkpoint with random towers opens too: the model picker shows its badge (catalog.model_badge)
    return JointSpace.load(model_dir, random_weights=True)


@st.cache_resource(show_spinner="Loading the knowledge graph…")
def load_graph(path: str | None):
    from medvl.knowledge import DiseaseGraph, default_graph

    return DiseaseGraph.load(path) if path else default_graph()


@st.cache_resource(show_spinner=False, max_entries=16)
def open_slide(path: str, mpp: float | None = None):
    from medvl.io.slide import open_slide as _open

    return _open(path, mpp=mpp)


@st.cache_data(show_spinner=False, max_entries=32)
def slide_thumbnail(path: str, max_px: int = 1024) -> np.ndarray:
    return open_slide(path).thumbnail(max_px)


@st.cache_data(show_spinner="Detecting tissue…", max_entries=32)
def tissue_mask(path: str) -> np.ndarray:
    from medvl.pathology.tissue import detect_tissue

    mask, _ = detect_tissue(open_slide(path))
    return mask.mask


@st.cache_resource(show_spinner="Embedding the slide's tiles…", max_entries=16)
def slide_tiles(path: str, model_dir: str, features: str | None, cache_dir: str | None = None,
                mpp: float | None = None):
    from medvl.apps.slideview import slide_tiles as _tiles

    return _tiles(open_slide(path, mpp), load_space(model_dir), Path(features) if features else None,
                  Path(cache_dir) if cache_dir else None)


@st.cache_resource(show_spinner=False)
def _local_tile_server():
    """A tile endpoint inside this Streamlit process, for a server not started by ``medvl app`` (which runs its
    own beside Streamlit and announces it in the environment)."""
    from medvl.apps.tileserver import TileServer

    return TileServer().start()


def tile_endpoint() -> tuple[str, str]:
    """``(endpoint URL, this session's token)`` for the deep-zoom viewer; the token is renewed before it expires."""
    import time

    from medvl.apps.tileserver import endpoint_from_env

    found = endpoint_from_env()
    if found is None:
        server = _local_tile_server()
        found = (server.url, server.tokens)
    url, tokens = found
    token = st.session_state.get(TOKEN_KEY)
    if token is None or tokens.expiry(token) - time.time() < 3600:
        token = st.session_state[TOKEN_KEY] = tokens.issue()
    return url, token


@st.cache_data(show_spinner=False, max_entries=32)
def tissue_overlay(path: str) -> str:
    """The tissue mask as the PNG data URL the viewer stretches over the slide."""
    from medvl.apps.viewerdata import tissue_png

    return tissue_png(tissue_mask(path))


@st.cache_resource(show_spinner="Preparing the disease classes…", max_entries=32)
def classifier(model_dir: str, graph_path: str | None, ids: tuple[str, ...], free: tuple, abstain: float | None):
    from medvl.apps.diagnosis import DiseaseSet, build_classifier

    return build_classifier(load_space(model_dir), load_graph(graph_path), DiseaseSet(ids, free), abstain)


@st.cache_resource(show_spinner="Embedding the cases…", max_entries=4)
def cases(model_dir: str, root: str):
    from medvl.apps.cases import case_index, load_cases

    found = load_cases(load_space(model_dir), scan(root))
    return found, (case_index(found) if len(found) else None)


@st.cache_resource(show_spinner="Reading the volume…", max_entries=8)
def view_volume(path: str, labels: str | None):
    from medvl.apps.ctview import load_view_volume

    return load_view_volume(path, labels)


@st.cache_resource(show_spinner="Locating the model's input…", max_entries=16)
def ct_model_input(path: str, labels: str | None, cache_folder: str):
    from medvl.apps.ctcrop import find_preprocessings, model_input

    folder = Path(cache_folder)
    config = next(cfg for f, cfg in find_preprocessings(folder.parent) if f == folder)
    return model_input(Path(path), Path(labels) if labels else None, folder, config, view_volume(path, labels).affine)


@st.cache_resource(show_spinner="Fitting the survival model…", max_entries=8)
def survival_view(table: str, saved: tuple[str, ...]):
    from medvl.apps.survivalview import build_view, guess_spec

    return build_view(guess_spec(table), [Path(s) for s in saved])


def pick_model(cat: catalog_mod.Catalog, key: str = "model") -> str | None:
    """Sidebar model choice among the workspace's checkpoints and the vision-language model cards installed in the
    model store (None, with a message, when there are none)."""
    if not cat.models and not cat.model_cards:
        st.info("This workspace has no model checkpoint yet (`medvl demo` trains one into `models/`; "
                "`medvl models unpack` installs a published model such as PLIP).")
        return None
    names = {m.name: str(m) for m in cat.models}
    names.update({f"{c} (model card)": c for c in cat.model_cards})
    chosen = names[st.sidebar.selectbox("Model", list(names), key=key)]
    badge = catalog_mod.model_badge(chosen)
    if badge:
        st.sidebar.warning(badge, icon="🎲")
    return chosen


def notes(messages: list[str]) -> None:
    """Warnings about a model's outputs (another training domain, random weights), each shown once per page."""
    for message in dict.fromkeys(messages):
        st.warning(message, icon="⚠️")


def graph_path(cat: catalog_mod.Catalog) -> str | None:
    return str(cat.graph) if cat.graph else None


def as_rows(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(records)


def disease_set(graph: Any, key: str, default_node: str = "breast cancer",
                default_list: str = "breast carcinoma, breast fibroadenoma, normal breast tissue"):
    """Widgets choosing a disease set (a graph node with its subtypes, or a custom list); None with a message if bad."""
    from medvl.apps.diagnosis import SCOPES, custom_set, node_set

    mode = st.radio("Disease set", ["knowledge-graph node", "custom list"], horizontal=True, key=f"{key}_mode")
    try:
        if mode == "knowledge-graph node":
            c1, c2 = st.columns([3, 2])
            node = c1.text_input("Disease (name or id)", default_node, key=f"{key}_node")
            scope = c2.selectbox("with its", SCOPES, key=f"{key}_scope")
            return node_set(graph, node, scope)
        text = st.text_area("Classes (comma-separated names or ids; unknown names stay free text)", default_list,
                            key=f"{key}_list", height=68)
        return custom_set(graph, text)
    except MedvlError as exc:
        error(exc)
        return None
