"""Property-based tests (hypothesis): tiling arithmetic, mpp round trips, and parsers that never crash.

Tiling runs on real slides opened through medvl (a 3-level tiled TIFF pyramid and the bundled SVS) with the level-0
mpp varied through the ``--slide-mpp`` override; mpp round trips write a real TIFF resolution tag and read it back
through the slide backends. The parsers get arbitrary text/bytes and must either parse or raise :class:`InputError`.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from medvl.errors import ConfigError, InputError
from medvl.io.slide import PLAUSIBLE_MPP, open_slide
from medvl.pathology.tiling import TileConfig, make_tile_grid
from medvl.resources import bundled

#: ``MEDVL_FUZZ=N`` (``make fuzz``) runs N times the examples from a random seed; see tests/conftest.py
FUZZ = int(os.environ.get("MEDVL_FUZZ", "1"))

FAST = settings(max_examples=40 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


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
@example(slide_mpp=2.0, mpp=0.2, size=31, overlap_frac=0.25, which="svs")  # last row ends at the edge: was dropped
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


@settings(max_examples=30 * FUZZ, deadline=None)
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


@settings(max_examples=60 * FUZZ, deadline=None)
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


@settings(max_examples=40 * FUZZ, deadline=None)
@given(terms)
@example([(1, "0", ["0  0"])])
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
        # inner whitespace runs collapse; repeats and copies of the name are dropped
        kept = [s for s in dict.fromkeys(" ".join(x.split()) for x in synonyms) if s != name]
        assert concept.name == name and [s.text for s in concept.synonyms] == kept
        assert concept.parents == ([] if i == 0 else [f"DOID:{terms[0][0]}"])


cells = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12)


@settings(max_examples=60 * FUZZ, deadline=None)
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


def _reads_a_volume_or_names(path: Path, name: str) -> None:
    """A damaged volume either loads as a finite 3-D array or raises an InputError that names it."""
    from medvl.io.volume import load_volume

    try:
        vol = load_volume(path)
    except InputError as exc:
        assert name in str(exc)
    else:
        assert vol.array.ndim == 3 and np.isfinite(vol.array).all()


@pytest.fixture(scope="module")
def small_nifti() -> bytes:
    import gzip

    return gzip.decompress(bundled("ct_small").read_bytes())[:352 + 16 * 16 * 4 * 2]


@settings(max_examples=60 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6))
def test_nifti_header_damage_reads_or_raises_input_error(small_nifti, flips):
    data = bytearray(small_nifti)
    for offset, value in flips:
        data[offset] = value
    assume(bytes(data) != small_nifti)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "v.nii"
        path.write_bytes(bytes(data))
        _reads_a_volume_or_names(path, "v.nii")


@pytest.fixture(scope="module")
def dicom_slices(tmp_path_factory) -> list[bytes]:
    from tests.radiology.dicom_series import write_ct_series

    folder = write_ct_series(tmp_path_factory.mktemp("dcm") / "s", bundled("ct_small"), slices=range(3))
    return [p.read_bytes() for p in sorted(folder.iterdir())]


@settings(max_examples=60 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), flips=st.lists(st.tuples(st.integers(128, 1400), st.integers(0, 255)), min_size=1,
                                                max_size=6), cut=st.none() | st.integers(0, 2000))
@example(which=0, flips=[(150, 0)], cut=152)  # length field cut short: pydicom raised struct.error
def test_dicom_damage_reads_or_raises_input_error(dicom_slices, which, flips, cut):
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
        _reads_a_volume_or_names(folder, "series")


@pytest.fixture(scope="module")
def embedding_files(tmp_path_factory) -> dict[str, bytes]:
    """The same small set written in every layout medvl writes, plus a tile feature store (.h5, CLAM-like)."""
    from medvl.io.embeddings import EmbeddingSet, save_embeddings
    from medvl.io.features import FeatureStore, TileTable
    from medvl.provenance import ModelPrint, Provenance

    folder = tmp_path_factory.mktemp("emb")
    rng = np.random.default_rng(0)
    made_by = Provenance(model=ModelPrint(encoder="timm-tiny", weights="random:seed=0", config="c"))  # damaged too
    emb = EmbeddingSet(rng.normal(size=(6, 4)).astype(np.float32), ids=np.array([f"c{i}" for i in range(6)]),
                       labels=np.array(["a", "b"] * 3), encoder="timm-tiny", modality="image", projected=False,
                       provenance=made_by)
    out = {suffix: save_embeddings(folder / f"e{suffix}", emb).read_bytes()
           for suffix in (".npz", ".parquet", ".csv", ".h5")}
    table = TileTable(np.arange(12).reshape(6, 2) * 224, {"mpp": 0.5, "tile_px": 224, "encoder": "timm-tiny"},
                      emb.embeddings, np.linspace(0, 1, 6, dtype=np.float32))
    out["tiles.h5"] = FeatureStore(folder / "t.h5").write(table).read_bytes()
    return out


@settings(max_examples=80 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([".npz", ".parquet", ".csv", ".h5", "tiles.h5"]),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6), cut=st.none() | st.floats(0, 1))
@example(kind="tiles.h5", flips=[(0.0625, 1)], cut=None)  # h5py raised KeyError on a damaged object header
def test_embeddings_damage_reads_or_raises_input_error(embedding_files, kind, flips, cut):
    """A damaged embeddings or feature file either reads as a finite [N, D] set or raises an InputError naming it."""
    from medvl.io.embeddings import load_embeddings

    data = bytearray(embedding_files[kind])
    for pos, value in flips:
        data[min(len(data) - 1, int(pos * len(data)))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"damaged{Path(kind).suffix}"
        path.write_bytes(bytes(data))
        try:
            emb = load_embeddings(path)
        except InputError as exc:
            assert path.name in str(exc)
        else:
            assert emb.embeddings.ndim == 2 and np.isfinite(emb.embeddings).all()


def _config_cases() -> list[tuple[str, str]]:
    """(config class, shipped recipe) pairs: every YAML recipe medvl ships, with the class its command reads it as."""
    return [("medvl.train.config:TrainConfig", "tiny-keep.yaml"), ("medvl.train.config:TrainConfig",
            "tiny-two-stage.yaml"), ("medvl.train.config:TrainConfig", "knowledge/text_bench.yaml"),
            ("medvl.pipelines.config:PipelineConfig", "pipelines/demo-cohort.yaml"),
            ("medvl.tasks.report:EvalConfig", "eval/gbsg2_survival.yaml")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


@settings(max_examples=80 * FUZZ, deadline=None)
@given(case=st.sampled_from(_config_cases()), pick=st.lists(st.integers(0, 50), min_size=1, max_size=4),
       value=json_values, drop=st.booleans())
def test_config_damage_builds_or_raises_config_error(case, pick, value, drop):
    """A shipped recipe with one value replaced (any JSON value, at any depth) or one key dropped either builds or
    raises a ConfigError: never a TypeError, KeyError or AttributeError from inside the config classes."""
    import importlib

    import yaml

    from medvl.resources import config_dir

    module, name = case[0].split(":")
    cls = getattr(importlib.import_module(module), name)
    data = yaml.safe_load((config_dir() / case[1]).read_text(encoding="utf-8"))
    node = data
    for i in pick:  # walk down the picked path as far as it goes
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = keys[i % len(keys)]
        if i == pick[-1] or not isinstance(node[key], (dict, list)) or not node[key]:
            if drop and isinstance(node, dict):
                del node[key]
            else:
                node[key] = value
            break
        node = node[key]
    try:
        cls.from_dict(data, source=case[1])
    except ConfigError:
        pass


@pytest.fixture(scope="module")
def svs_bytes() -> bytes:
    return bundled("slide").read_bytes()


@settings(max_examples=30 * FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8), head=st.booleans(),
       cut=st.none() | st.floats(0, 1))
def test_slide_damage_tiles_or_raises_input_error(svs_bytes, flips, head, cut):
    """A damaged slide (header or tile bytes flipped, or cut short) either tiles and reads every tile through the
    threaded loader, or raises an InputError naming it."""
    from medvl.pathology.loader import iter_tile_batches

    data = bytearray(svs_bytes)
    span = 4096 if head else len(data)  # the TIFF header and first IFD, or anywhere (mostly JPEG tile data)
    for pos, value in flips:
        data[int(pos * (span - 1))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "damaged.svs"
        path.write_bytes(bytes(data))
        try:
            with open_slide(path, mpp=0.5) as slide:
                grid = make_tile_grid(slide, TileConfig(mpp=0.5, size=224, min_tissue=0.0))
                read = sum(len(tiles) for _, tiles in iter_tile_batches(slide, grid, batch_size=32, workers=2))
                assert read == len(grid)
        except InputError as exc:
            assert "damaged.svs" in str(exc)
