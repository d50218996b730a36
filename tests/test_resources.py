"""Bundled files are found inside the package, as in an installed wheel; MEDVL_DATA_ROOT overrides data and ontology."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import medvl
from medvl.errors import InputError
from medvl.knowledge.templates import TEMPLATE_SETS, load_templates
from medvl.resources import BUNDLED, app_dir, bundled, config_dir, data_root, package_dir, template_dir


def test_bundled_files_live_inside_the_package():
    root = package_dir()
    assert root == data_root() and (root / "__init__.py").samefile(medvl.__file__)
    for name in BUNDLED:
        path = bundled(name)
        assert path.is_relative_to(root) and path.stat().st_size > 10_000, name
    with np.load(bundled("breastmnist")) as data:
        assert data["train_images"].shape == (546, 28, 28)
    assert (config_dir() / "pipelines" / "demo-cohort.yaml").is_file()
    assert (app_dir() / "Home.py").is_file() and len(list((app_dir() / "pages").glob("*.py"))) == 5
    assert all(load_templates(name) for name in TEMPLATE_SETS)
    assert template_dir().is_relative_to(root)


def test_data_root_override(tmp_path, monkeypatch):
    (tmp_path / "data" / "ct").mkdir(parents=True)
    shutil.copy2(bundled("ct_labels"), tmp_path / "data" / "ct")
    monkeypatch.setenv("MEDVL_DATA_ROOT", str(tmp_path))
    assert bundled("ct_labels") == tmp_path / BUNDLED["ct_labels"]
    with pytest.raises(InputError, match="bundled data file not found in MEDVL_DATA_ROOT") as err:
        bundled("slide")
    assert str(tmp_path / BUNDLED["slide"]) in str(err.value)
    assert config_dir().is_relative_to(package_dir())  # configs and pages always come from the package
    with pytest.raises(KeyError, match="unknown bundled file 'nope'"):
        bundled("nope")
