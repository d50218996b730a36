"""Property-based tests (hypothesis): tiling arithmetic, mpp round trips, and parsers that never crash.

Tiling runs on real slides opened through medvl (a 3-level tiled TIFF pyramid and the bundled SVS) with the level-0
mpp varied through the ``--slide-mpp`` override; mpp round trips write a real TIFF resolution tag and read it back
through the slide backends. The parsers get arbitrary text/bytes and must either parse or raise :class:`InputError`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medvl.errors import ConfigError, InputError
from medvl.io.slide import PLAUSIBLE_MPP, open_slide
from medvl.pathology.tiling import TileConfig, make_tile_grid
from medvl.resources import bundled

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory) -> Path:
    from tests.pathology.synthetic_slides import write_pyramid_tiff

    return write_pyramid_tiff(tmp_path_factory.mktemp("prop") / "pyr.tiff", width=1000, height=700, mpp=0.25,
                              levels=3, tile=64)


slide_mpps = st.floats(0.1, 2.0, allow_nan=False)
target_mpps = st.floats(0.2, 8.0, allow_nan=False)
sizes = st.integers(8, 512)


@FAST
@given(slide_mpp=slide_mpps, mpp=target_mpps, size=sizes, overlap_frac=st.floats(0, 0.9), which=st.sampled_from(
    ["pyramid", "svs"]))
def test_tile_grid_stays_inside_and_counts_the_grid(pyramid, slide_mpp, mpp, size, overlap_frac, which):
    overlap = min(size - 1, int(size * overlap_frac))
    path = pyramid if which == "pyramid" else bundled("slide")
    stride0 = (size - overlap) * mpp / slide_mpp
    with open_slide(path, mpp=slide_mpp) as slide:
        config = TileConfig(mpp=mpp, size=size, overlap=overlap, min_tissue=0.0)
        if stride0 < 1:  # sub-pixel steps would repeat tiles: refused with a clear error
            with pytest.raises(ConfigError, match="lower --overlap"):
                make_tile_grid(slide, config)
            return
        grid = make_tile_grid(slide, config)
        w0, h0 = slide.dimensions
        downsamples = slide.level_downsamples
    patch0 = grid.patch_size_level0
    assert abs(patch0 * slide_mpp - size * mpp) <= slide_mpp * 0.5 + 1e-9  # physical field of view
    if len(grid):
        x, y = grid.coords[:, 0], grid.coords[:, 1]
        assert x.min() >= 0 and y.min() >= 0
        assert (x + patch0).max() <= w0 and (y + patch0).max() <= h0  # every tile inside the slide
    xs, ys = np.unique(grid.coords[:, 0]), np.unique(grid.coords[:, 1])
    counts = [0 if extent < patch0 else math.floor((extent - patch0) / stride0 + 1e-9) + 1 for extent in (w0, h0)]
    assert len(grid) == counts[0] * counts[1]  # the tile count equals the grid
    for starts, expected in ((xs, counts[0]), (ys, counts[1])):
        assert len(starts) == (expected if len(grid) else 0)  # a full grid: every row has every column
        if len(starts) > 1:
            assert np.abs(np.diff(starts) - stride0).max() <= 1.0  # even steps (rounding only)
    order = np.lexsort((grid.coords[:, 0], grid.coords[:, 1]))
    assert np.array_equal(order, np.arange(len(grid)))  # row-major
    ds = downsamples[grid.level]
    assert ds <= max(1.0, (mpp / slide_mpp) * 1.01)  # never read coarser than the target
    assert abs(grid.read_px * ds - patch0) <= ds  # the read size covers the patch at that level


@settings(max_examples=30, deadline=None)
@given(mpp=st.floats(PLAUSIBLE_MPP[0], 10.0, allow_nan=False))
def test_mpp_round_trips_through_a_tiff_resolution_tag(mpp):
    import tifffile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.tiff"
        img = np.full((64, 64, 3), 200, np.uint8)
        img[16:48, 16:48] = (200, 120, 170)
        tifffile.imwrite(path, img, photometric="rgb", tile=(64, 64), resolution=(1e4 / mpp, 1e4 / mpp),
                         resolutionunit="CENTIMETER")
        with open_slide(path) as slide:
            assert slide.mpp == pytest.approx(mpp, rel=1e-5)
            assert slide.mpp_source == "header"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]Term:id!\"\\ _{}abcDOI0123:\n\t,.-^")), max_size=300))
def test_obo_parser_parses_or_raises_input_error(text):
    from medvl.knowledge.obo import read_obo

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.obo"
        path.write_text(text, encoding="utf-8")
        try:
            out = read_obo(path)
        except InputError as exc:
            assert "x.obo" in str(exc)
        else:
            assert out.concepts and all(c.id and c.name for c in out.concepts)


terms = st.lists(
    st.tuples(st.integers(1, 9999), st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
              st.lists(st.text(st.characters(categories=["L", "N"], include_characters=" -"), min_size=1,
                               max_size=20).map(str.strip).filter(bool), max_size=3)),
    min_size=1, max_size=8, unique_by=lambda t: t[0])


@settings(max_examples=40, deadline=None)
@given(terms)
def test_obo_terms_round_trip(terms):
    from medvl.knowledge.obo import read_obo

    lines = ["format-version: 1.2", ""]
    for i, (code, name, synonyms) in enumerate(terms):
        lines += ["[Term]", f"id: DOID:{code}", f"name: {name}"]
        lines += [f'synonym: "{s}" EXACT []' for s in synonyms]
        if i:
            lines.append(f"is_a: DOID:{terms[0][0]} ! root")
        lines.append("")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.obo"
        path.write_text("\n".join(lines), encoding="utf-8")
        parsed = {c.id: c for c in read_obo(path).concepts}
    assert list(parsed) == [f"DOID:{code}" for code, _, _ in terms]
    for i, (code, name, synonyms) in enumerate(terms):
        concept = parsed[f"DOID:{code}"]
        assert concept.name == name and [s.text for s in concept.synonyms] == synonyms
        assert concept.parents == ([] if i == 0 else [f"DOID:{terms[0][0]}"])


cells = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(header=st.lists(st.sampled_from(["case_id", "modality", "path", "time", "event", "x"]), max_size=6),
       rows=st.lists(st.lists(cells, min_size=0, max_size=6), max_size=5))
def test_manifest_reader_parses_or_raises_input_error(header, rows):
    import csv

    from medvl.io.manifest import read_manifest

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        try:
            manifest = read_manifest(path)
        except InputError as exc:
            assert "m.csv" in str(exc)
        else:
            assert all(row.path.exists() for row in manifest.rows)


@pytest.fixture(scope="module")
def small_nifti() -> bytes:
    import gzip

    return gzip.decompress(bundled("ct_small").read_bytes())[:352 + 16 * 16 * 4 * 2]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6))
def test_nifti_header_damage_reads_or_raises_input_error(small_nifti, flips):
    from medvl.io.volume import load_volume

    data = bytearray(small_nifti)
    for offset, value in flips:
        data[offset] = value
    assume(bytes(data) != small_nifti)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "v.nii"
        path.write_bytes(bytes(data))
        try:
            vol = load_volume(path)
        except InputError as exc:
            assert "v.nii" in str(exc)
        else:
            assert vol.array.ndim == 3 and np.isfinite(vol.array).all()


@pytest.fixture(scope="module")
def dicom_slices(tmp_path_factory) -> list[bytes]:
    from tests.radiology.dicom_series import write_ct_series

    folder = write_ct_series(tmp_path_factory.mktemp("dcm") / "s", bundled("ct_small"), slices=range(3))
    return [p.read_bytes() for p in sorted(folder.iterdir())]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), flips=st.lists(st.tuples(st.integers(128, 1400), st.integers(0, 255)), min_size=1,
                                                max_size=6), cut=st.none() | st.integers(0, 2000))
def test_dicom_damage_reads_or_raises_input_error(dicom_slices, which, flips, cut):
    from medvl.io.volume import load_volume

    data = bytearray(dicom_slices[which])
    for offset, value in flips:
        data[offset] = value
    if cut is not None:
        data = data[:cut]
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "series"
        folder.mkdir()
        for i, raw in enumerate(dicom_slices):
            (folder / f"{i}.dcm").write_bytes(bytes(data) if i == which else raw)
        try:
            vol = load_volume(folder)
        except InputError as exc:
            assert "series" in str(exc)
        else:
            assert vol.array.ndim == 3 and np.isfinite(vol.array).all()
