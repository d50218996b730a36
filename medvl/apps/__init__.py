"""Support code for medvl's Streamlit apps (the entry script ``medvl/apps/streamlit/Home.py`` and its ``pages/``).

Everything here except :mod:`medvl.apps.ui` is plain library code (numpy, PIL, matplotlib, medvl) that the pages call
and the tests exercise without a browser: workspace roots and the workspace picker's resolver, upload limits, the
workspace catalogue, image rendering, and one module per page's logic. :mod:`medvl.apps.ui` is the only module that
imports Streamlit; only the pages import it, so ``import medvl`` never needs Streamlit.
"""
