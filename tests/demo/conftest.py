"""Fixtures of the demo tests."""

from __future__ import annotations

import pytest

from medvl.knowledge import DiseaseGraph, default_graph


@pytest.fixture(scope="session")
def graph() -> DiseaseGraph:
    return default_graph()
