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


def test_no_library_package_imports_the_demo():
    import ast

    from medvl.resources import project_root

    root = project_root() / "medvl"
    offenders = []
    for path in root.rglob("*.py"):
        top = path.relative_to(root).parts[0]
        if top in ("demo", "cli", "apps"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[:2] == ["medvl", "demo"]]
    assert offenders == []
