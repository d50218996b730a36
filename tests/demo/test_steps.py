"""The demo's step plan: declared needs give the order; ``only`` brings in what a step needs."""

from __future__ import annotations

import pytest

from medvl.demo.steps import DEMO_STEPS, DemoStep, plan
from medvl.errors import ConfigError


def test_every_step_runs_after_what_it_needs_in_the_reported_order():
    order = [s.name for s in plan()]
    assert order == ["data", "graph", "slides", "ct", "train", "tasks", "cohort"]
    for i, step in enumerate(plan()):
        assert set(step.needs) <= set(order[:i])


def test_only_adds_needs_and_unknown_names_are_clear():
    assert [s.name for s in plan(["tasks"])] == ["data", "graph", "slides", "train", "tasks"]
    assert [s.name for s in plan(["graph"])] == ["graph"]
    with pytest.raises(ConfigError, match="unknown demo step 'trian'; known: cohort, ct, data"):
        plan(["trian"])


def test_a_step_name_registers_once():
    step = DEMO_STEPS.get("data")
    with pytest.raises(ConfigError, match="demo step 'data' is already registered"):
        DEMO_STEPS.add("data", DemoStep("data", step.fn, "again"))

