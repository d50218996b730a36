"""The demo: medvl's bundled real data run through the library into a workspace, an application on top of medvl.

``build_demo`` runs the demo steps (:mod:`medvl.demo.steps`) in the order their ``needs`` give; each step takes the
workspace and returns a JSON record for the demo report (``<workspace>/demo_report.json``). Steps are idempotent, so
rerunning the demo reuses earlier outputs. No library package imports this one.
"""

from __future__ import annotations

from medvl.demo.build import build_demo

__all__ = ["build_demo"]
