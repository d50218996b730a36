"""The wheel carries what medvl reads at run time: the bundled data with its notice and licence texts, the ontology
sources, prompt templates, shipped configs and the Streamlit pages. A missing package-data rule fails here, before a
user's install does. (.ci/wheel-check installs the wheel and runs the demo, the ontology search and the app.)"""

from __future__ import annotations

import csv
import io
import posixpath
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from medvl.knowledge.templates import TEMPLATE_SETS
from medvl.resources import BUNDLED, SHIPPED, app_dir, source_checkout

MAX_WHEEL_BYTES = 12 * 1024 * 1024  # the licence-permitted bundle is about 8 MB before compression


def _checkout_files(root: Path) -> list[str]:
    """Files git tracks or would track (untracked, not ignored) that exist: what a clean clone plus edits holds."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                         check=True).stdout.decode()
    return sorted(p for p in set(out.split("\0")) if p and (root / p).is_file())


@dataclass(repr=False)
class Built:
    names: set[str]  # file names in the wheel
    size: int  # bytes
    files: list[str]  # checkout files it was built from
    cohort_paths: list[str]  # the paths of the demo cohort's manifest, as written


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """A wheel built from a copy of the checkout."""
    root = source_checkout()
    if root is None or shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs a git checkout of medvl")
    tmp = tmp_path_factory.mktemp("wheel")
    files = _checkout_files(root)
    for rel in files:  # a copy, so the build never reads stale build/ folders or caches of this checkout
        (tmp / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, tmp / "src" / rel)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "-w", str(tmp / "dist"), str(tmp / "src")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("medvl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = "medvl/configs/pipelines/demo-cohort.csv"
        cohort = zf.read(manifest).decode() if manifest in names else ""
    paths = [row["path"] for row in csv.DictReader(io.StringIO(cohort))]
    return Built(names, wheel.stat().st_size, files, paths)


def test_wheel_holds_what_resources_and_the_app_launcher_read(built):
    needed = [f"medvl/{rel}" for rel in BUNDLED.values()]
    needed += [f"medvl/ontology/templates/{name}.txt" for name in TEMPLATE_SETS]
    needed += ["medvl/apps/streamlit/Home.py"]
    needed += [f"medvl/apps/streamlit/pages/{p.name}" for p in sorted((app_dir() / "pages").glob("*.py"))]
    needed += ["medvl/configs/demo-breastmnist.yaml", "medvl/configs/pipelines/demo-cohort.yaml"]
    needed += ["medvl/data/DATA_NOTICE.md", "medvl/data/licenses/Apache-2.0.txt", "medvl/data/licenses/CC0-1.0.txt",
               "medvl/ontology/README.md", "medvl/py.typed"]
    assert [n for n in needed if n not in built.names] == []
    assert any(n.endswith(".dist-info/licenses/medvl/data/DATA_NOTICE.md") for n in built.names)  # PEP 639 metadata


def test_every_shipped_checkout_file_is_in_the_wheel(built):
    """Each file git tracks under the shipped folders (medvl.resources.SHIPPED) ships, except dotfiles."""
    shipped = [f for f in built.files if any(f.startswith(f"medvl/{d}/") for d in SHIPPED)
               and not posixpath.basename(f).startswith(".")]
    assert len(shipped) >= 30
    assert [f for f in shipped if f not in built.names] == []


def test_demo_cohort_paths_resolve_inside_the_wheel(built):
    """The demo cohort's manifest names the bundled files relative to itself; they resolve inside the package."""
    assert len(built.cohort_paths) == 3
    for rel in built.cohort_paths:
        assert posixpath.normpath(posixpath.join("medvl/configs/pipelines", rel)) in built.names, rel


def test_wheel_is_small_and_carries_no_caches_or_strays(built):
    assert built.size < MAX_WHEEL_BYTES, f"wheel is {built.size / 2**20:.1f} MiB"
    package = [n for n in built.names if n.startswith("medvl/")]
    assert [n for n in package if n not in built.files] == []  # nothing but checkout files (no built graphs, no .pyc)
