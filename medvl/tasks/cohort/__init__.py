"""Cohort checks: duplicate and near-duplicate items (pictures, reports) and leakage across splits.

``check_leakage(manifest, config)`` is what ``medvl cohort check`` and ``medvl train --check`` run.
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("LeakageConfig", "check_leakage", "clusters"), "medvl.tasks.cohort.check"),
    **dict.fromkeys(("DuplicateConfig", "Pair"), "medvl.tasks.cohort.pairs"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
