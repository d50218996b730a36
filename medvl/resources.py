"""Where medvl's bundled files live: data, ontology sources, prompt templates, configs and the Streamlit pages.

They ship inside the package, in a source checkout and in an installed wheel alike, and are found through
:mod:`importlib.resources`:

- ``medvl/data/``: a whole-slide image, CT volumes with an organ label map and BreastMNIST, with
  ``DATA_NOTICE.md`` and the licence texts (``medvl/data/licenses/``);
- ``medvl/ontology/``: the Disease Ontology / OncoTree sources, their build recipe (``README.md``) and the prompt
  templates (``templates/``);
- ``medvl/configs/``: ready recipes and the demo's configs;
- ``medvl/apps/streamlit/``: the Streamlit entry script ``Home.py`` and its ``pages/``.

``MEDVL_DATA_ROOT`` points at another folder laid out like the package (``data/`` and ``ontology/``) for the bundled
files and templates; configs and pages always come from the package.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from medvl.errors import InputError, MedvlError

#: short name -> file, relative to the data root (the package folder unless ``MEDVL_DATA_ROOT`` is set)
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

#: folders of the package that hold shipped files (not Python modules), relative to the package folder; every file
#: git tracks under them must be in the wheel (tests/test_packaging.py checks a built wheel)
SHIPPED = ("data", "ontology", "configs", "apps/streamlit", "apps/components/deepzoom/build")


def package_dir() -> Path:
    """The folder of the ``medvl`` package as installed (a checkout's ``medvl/`` or ``site-packages/medvl``)."""
    root = resources.files("medvl")
    if not isinstance(root, Path):
        raise MedvlError("medvl must be installed as plain files (a wheel or a checkout), not imported from a zip")
    return root


def data_root() -> Path:
    """The folder holding ``data/`` and ``ontology/``: ``$MEDVL_DATA_ROOT``, else the package folder."""
    env = os.environ.get("MEDVL_DATA_ROOT")
    return Path(env) if env else package_dir()


def bundled(name: str) -> Path:
    """Path of a bundled file by short name (see ``BUNDLED``); a clear error when it is absent."""
    if name not in BUNDLED:
        raise KeyError(f"unknown bundled file '{name}' (known: {', '.join(BUNDLED)})")
    path = data_root() / BUNDLED[name]
    if not path.is_file():
        where = "MEDVL_DATA_ROOT" if os.environ.get("MEDVL_DATA_ROOT") else "the installed medvl package"
        raise InputError(path, f"bundled data file not found in {where} (reinstall medvl, or set MEDVL_DATA_ROOT to "
                               "a folder holding data/ and ontology/)")
    return path


def ontology_dir() -> Path:
    """The ontology sources and their build recipe (``README.md``)."""
    return data_root() / "ontology"


def template_dir() -> Path:
    """The zero-shot prompt templates, one ``<set>.txt`` per template set."""
    return ontology_dir() / "templates"


def config_dir() -> Path:
    """The shipped configs (``tiny-keep.yaml``, ``pipelines/demo-cohort.yaml``, ...)."""
    return package_dir() / "configs"


def app_dir() -> Path:
    """The Streamlit suite: ``Home.py`` and ``pages/``."""
    return package_dir() / "apps" / "streamlit"


def source_checkout() -> Path | None:
    """The source checkout the package runs from (the folder with ``pyproject.toml`` above it); None when installed."""
    root = package_dir().parent
    return root if (root / "pyproject.toml").is_file() else None


def shared_data_dir() -> Path | None:
    """The read-only ``shared/data`` folder (test and benchmark data): ``$MEDVL_SHARED_DATA``, else beside the
    checkout; None when absent."""
    env = os.environ.get("MEDVL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    checkout = source_checkout()
    if checkout is not None:
        candidates.append(checkout.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None
