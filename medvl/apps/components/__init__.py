"""Streamlit components built in the project (static frontends under ``<name>/build``).

``deepzoom``: the OpenSeadragon slide viewer. Its bundle (``deepzoom/build/viewer.js``, built from
``deepzoom/src/index.js`` and the ``openseadragon`` npm package by ``make viewer-assets``) is committed, so a clean
checkout serves it without Node. Streamlit is imported only when a component is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEEPZOOM_BUILD", "deepzoom_viewer"]

DEEPZOOM_BUILD = Path(__file__).parent / "deepzoom" / "build"


def deepzoom_viewer(args: dict[str, Any], key: str | None = None) -> dict[str, Any] | None:
    """Draw the deep-zoom viewer; returns the last click (``{"x", "y", "id"}`` in level-0 pixels) or None.

    Args:
        args: the viewer's state, as :func:`medvl.apps.viewerdata.viewer_args` builds it (JSON-able).
        key: the Streamlit element key (keep it stable: the viewer keeps its zoom and position across reruns).
    """
    import streamlit.components.v1 as components

    if not (DEEPZOOM_BUILD / "viewer.js").is_file():
        from medvl.errors import InputError

        raise InputError(DEEPZOOM_BUILD, "the viewer bundle is missing: run `make viewer-assets`")
    # declared on every call: a component registers with the running Streamlit runtime, and tests start several
    component = components.declare_component("medvl_deepzoom", path=str(DEEPZOOM_BUILD))
    return component(**args, key=key, default=None)
