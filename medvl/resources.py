"""Where the bundled data and ontology files live.

The project ships a few small real files (see DATA_NOTICE.md): a whole-slide image, CT volumes with an organ label map,
BreastMNIST, and the Disease Ontology / OncoTree sources under ``ontology/``. They sit in the project checkout beside
the package; ``MEDVL_DATA_ROOT`` points elsewhere (a folder holding ``data/`` and ``ontology/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from medvl.errors import InputError

BUNDLED = {
    "slide": "data/wsi/cmu-1-small-region.svs",
    "ct": "data/ct/example_ct.nii.gz",
    "ct_small": "data/ct/example_ct_sm.nii.gz",
    "ct_labels": "data/ct/example_ct_seg_multilabel.nii.gz",
    "breastmnist": "data/image_text/breastmnist.npz",
    "doid_ncit": "ontology/doid_NCIthesaurus.obo",
    "doid_cancer_slim": "ontology/doid_DO_cancer_slim.obo",
    "doid_top_nodes": "ontology/doid_TopNodes_DOcancerslim.obo",
    "oncotree": "ontology/oncotree_2025_10_03.json",
}


def project_root() -> Path:
    """The folder holding ``data/`` and ``ontology/``."""
    env = os.environ.get("MEDVL_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent


def bundled(name: str) -> Path:
    """Path of a bundled file by short name (see ``BUNDLED``); a clear error when it is absent."""
    if name not in BUNDLED:
        raise KeyError(f"unknown bundled file '{name}' (known: {', '.join(BUNDLED)})")
    path = project_root() / BUNDLED[name]
    if not path.is_file():
        raise InputError(path, "bundled data file not found (set MEDVL_DATA_ROOT to the medvl checkout)")
    return path


def config_dir() -> Path:
    return project_root() / "configs"


def shared_data_dir() -> Path | None:
    """The read-only ``shared/data`` folder beside the checkout (test and benchmark data), if present."""
    env = os.environ.get("MEDVL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(project_root().parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None
