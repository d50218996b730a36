"""The demo step registry: each step declares what it ``needs``; the demo runs them in that order.

A step is ``fn(ws) -> record`` (a JSON-able dict for the demo report). Steps are registered by the modules in
:data:`STEP_MODULES`, imported on first use; among steps whose needs are met, the one whose module comes first in
:data:`STEP_MODULES` runs first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medvl.errors import ConfigError
from medvl.registry import Registry
from medvl.workspace import Workspace

__all__ = ["DEMO_STEPS", "DemoStep", "demo_step", "plan"]

StepFn = Callable[[Workspace], dict[str, Any]]


@dataclass(frozen=True)
class DemoStep:
    """A registered demo step.

    Attributes:
        name: the step's key in the demo report.
        fn: ``fn(ws) -> record``.
        description: one line for the log.
        needs: steps whose outputs this one reads (they run before it).
    """

    name: str
    fn: StepFn
    description: str
    needs: tuple[str, ...] = ()


#: modules whose import registers the demo steps (in this order)
STEP_MODULES = (
    "medvl.demo.data",
    "medvl.demo.graph",
    "medvl.demo.slides",
    "medvl.demo.ct",
    "medvl.demo.train",
    "medvl.demo.tasks",
    "medvl.demo.cohort",
)

DEMO_STEPS: Registry[DemoStep] = Registry("demo step", builtins=STEP_MODULES)


def demo_step(name: str, description: str, needs: Sequence[str] = ()) -> Callable[[StepFn], StepFn]:
    """Decorator registering ``fn(ws) -> record`` as the demo step ``name``."""

    def register(fn: StepFn) -> StepFn:
        DEMO_STEPS.add(name, DemoStep(name, fn, description, tuple(needs)))
        return fn

    return register


def plan(only: Sequence[str] | None = None) -> list[DemoStep]:
    """The steps to run, each after what it needs: all of them, or ``only`` these and what they need."""
    # ties go by STEP_MODULES order (then registration order), whichever step module was imported first
    rank = {m: i for i, m in enumerate(STEP_MODULES)}
    items = DEMO_STEPS.items()
    steps = dict(sorted(items, key=lambda kv: rank.get(kv[1].fn.__module__, len(rank))))
    wanted = set(steps) if not only else _with_needs([DEMO_STEPS.get(n).name for n in only], steps)
    order: list[DemoStep] = []
    done: set[str] = set()
    while len(done) < len(wanted):
        ready = [s for n, s in steps.items() if n in wanted and n not in done and set(s.needs) <= done]
        if not ready:
            raise ConfigError(f"demo steps: circular needs among {', '.join(sorted(wanted - done))}")
        order.append(ready[0])
        done.add(ready[0].name)
    return order


def _with_needs(names: list[str], steps: dict[str, DemoStep]) -> set[str]:
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in steps:
            raise ConfigError(f"demo step needs an unknown step '{name}'")
        wanted.add(name)
        todo.extend(steps[name].needs)
    return wanted
