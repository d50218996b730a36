"""Demo step ``data``: the bundled slide, CT volumes and label map, copied into the workspace."""

from __future__ import annotations

import shutil
from typing import Any

from medvl.demo.layout import bundled_copies
from medvl.demo.steps import demo_step
from medvl.resources import bundled
from medvl.workspace import Workspace


@demo_step("data", "copy the bundled slide, CT volumes and label map into the workspace")
def step_data(ws: Workspace) -> dict[str, Any]:
    copies = bundled_copies(ws)
    for name, dst in copies.items():
        if not dst.exists():
            shutil.copyfile(bundled(name), dst)
    return {k: str(v.relative_to(ws.root)) for k, v in copies.items()}
