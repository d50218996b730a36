"""Slides in real formats for the whole-slide tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.pathology import synthetic_slides as syn


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slides")
    syn.write_pyramid_tiff(d / "pyramid.tiff", width=2048, height=1536, mpp=0.25)
    syn.write_strip_tiff(d / "strip.tif", mpp=0.5)
    syn.write_fluorescence_tiff(d / "fluorescence.tiff")
    syn.write_blank_tiff(d / "blank.tiff")
    return d


@pytest.fixture(scope="session")
def pyramid_tiff(slide_dir) -> Path:
    return slide_dir / "pyramid.tiff"


@pytest.fixture(scope="session")
def strip_tiff(slide_dir) -> Path:
    return slide_dir / "strip.tif"


@pytest.fixture(scope="session")
def fluorescence_tiff(slide_dir) -> Path:
    return slide_dir / "fluorescence.tiff"


@pytest.fixture(scope="session")
def blank_tiff(slide_dir) -> Path:
    return slide_dir / "blank.tiff"


@pytest.fixture(scope="session")
def corrupt_svs(tmp_path_factory, svs_path) -> Path:
    """The bundled SVS with part of its JPEG tile data overwritten: the header opens, pixels do not decode."""
    data = bytearray(svs_path.read_bytes())
    data[400_000:700_000] = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    path = tmp_path_factory.mktemp("bad") / "corrupt.svs"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def levels_tiff(shared_data) -> Path:
    """The 4-level tiled TIFF whose resolution tag is wrong (mpp reads ~352 µm/px)."""
    path = shared_data / "wsi" / "pathml_small_HE_levels.tiff"
    if not path.is_file():
        pytest.skip("pathml_small_HE_levels.tiff not in shared/data")
    return path
