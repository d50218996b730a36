"""open_slide over real formats: the bundled SVS, a tiled pyramid, a strip TIFF, fluorescence, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvl.errors import InputError
from medvl.io.slide import open_slide
from medvl.resources import bundled
from tests.pathology import synthetic_slides as syn


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("io_slides")
    syn.write_pyramid_tiff(d / "pyramid.tiff", mpp=0.25)
    syn.write_strip_tiff(d / "strip.tif", mpp=0.5)
    syn.write_fluorescence_tiff(d / "fluorescence.tiff")
    (d / "notes.svs").write_text("this is not a slide\n" * 50)
    (d / "image.xyz").write_bytes(b"\x00" * 100)
    syn.write_truncated_copy(bundled("slide"), d / "truncated.svs", keep=0.5)
    return d


def test_bundled_svs_header(svs_path):
    with open_slide(svs_path) as s:
        assert s.backend == "openslide" and s.vendor == "aperio"
        assert s.dimensions == (2220, 2967) and s.level_count == 1
        assert s.mpp == pytest.approx(0.499) and s.mpp_source == "header"
        assert s.objective_power == 20
        assert set(s.associated) == {"label", "macro", "thumbnail"}
        region = s.read_region((1000, 1500), 0, (64, 32))
        assert region.shape == (32, 64, 3) and region.dtype == np.uint8
        assert s.associated_image("thumbnail").shape[2] == 3
        info = s.info()
    assert "User" not in str(info) and "Filename" not in str(info)  # no header free text that may identify people


def test_pyramid_tiff_levels_and_mpp(made):
    with open_slide(made / "pyramid.tiff") as s:
        assert s.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert s.level_downsamples == pytest.approx((1, 2, 4))
        assert s.mpp == pytest.approx(0.25)
        assert s.best_level_for_downsample(2.0) == 1 and s.best_level_for_downsample(3.9) == 1
        assert s.best_level_for_downsample(8) == 2
        thumb = s.thumbnail(256)
        assert max(thumb.shape[:2]) == 256


def test_strip_tiff_falls_back_to_tiffslide(made):
    with open_slide(made / "strip.tif") as s:
        assert s.backend == "tiffslide"
        assert s.dimensions == (600, 400) and s.mpp == pytest.approx(0.5)
        assert s.read_region((0, 0), 0, (600, 400)).shape == (400, 600, 3)


def test_fluorescence_is_refused_not_misread(made):
    with open_slide(made / "fluorescence.tiff") as s:
        assert not s.is_rgb and s.meta.channels == 4
        with pytest.raises(InputError, match="not an RGB brightfield slide"):
            s.read_region((0, 0), 0, (16, 16))


def test_implausible_header_mpp_needs_override(shared_data):
    path = shared_data / "wsi" / "pathml_small_HE_levels.tiff"
    if not path.is_file():
        pytest.skip("pathml_small_HE_levels.tiff absent")
    with open_slide(path) as s:
        assert s.level_count == 4 and s.meta.header_mpp > 100
        assert s.mpp is None
        with pytest.raises(InputError, match="--slide-mpp"):
            s.require_mpp()
    with open_slide(path, mpp=0.5) as s:
        assert s.mpp == 0.5 and s.mpp_source == "override"


@pytest.mark.parametrize(
    ("name", "needle"),
    [("missing.svs", "not found"), ("notes.svs", "not a readable slide"), ("image.xyz", "unknown slide format"),
     ("truncated.svs", "not a readable slide")],
)
def test_bad_inputs_name_file_and_reason(made, name, needle):
    with pytest.raises(InputError) as err:
        open_slide(made / name)
    assert name in str(err.value) and needle in str(err.value)


def test_dicom_wsi_folder(tmp_path):
    folder = syn.write_dicom_wsi(tmp_path / "dicom_wsi", width=512, height=384, tile=128, mpp=0.5, levels=2)
    scene = syn.he_scene(512, 384)
    with open_slide(folder) as s:
        assert s.backend == "wsidicom" and s.slide_id == "dicom_wsi"
        assert s.level_dimensions == ((512, 384), (256, 192)) and s.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(s.read_region((100, 140), 0, (60, 50)), scene[140:190, 100:160])
        assert s.read_region((256, 128), 1, (32, 32)).shape == (32, 32, 3)  # xy in level-0 pixels
        assert s.thumbnail(128).shape == (96, 128, 3)


# ---------------------------------------------------------------------------------------- issue 16: formats
@pytest.mark.parametrize("sparse", [False, True])
def test_single_file_dicom_wsi_opens_where_wsidicom_needs_more(tmp_path, sparse):
    from wsidicom import WsiDicom

    path = syn.write_single_file_dicom_wsi(tmp_path / "one.dcm", width=300, height=200, tile=128, sparse=sparse)
    with pytest.raises(Exception):  # noqa: B017 - wsidicom's own error types: it refuses the lone file
        WsiDicom.open(path)
    scene = syn.he_scene(300, 200)
    with open_slide(path) as s:
        assert s.backend == "pydicom-frames" and s.dimensions == (300, 200) and s.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(s.read_region((100, 60), 0, (150, 120)), scene[60:180, 100:250])
        edge = s.read_region((280, 190), 0, (40, 20))  # past the image: white background
        np.testing.assert_array_equal(edge[:10, :20], scene[190:200, 280:300])
        assert (edge[:, 20:] == 255).all()
        assert s.thumbnail(100).shape == (67, 100, 3)
    with open_slide(tmp_path) as s:  # a folder holding just that file
        assert s.backend == "pydicom-frames"


def test_qptiff_opens_for_info_and_refuses_rgb_reads(tmp_path):
    path = syn.write_qptiff(tmp_path / "panel.qptiff")
    with open_slide(path) as s:
        info = s.info()
        assert info["channels"] == 4 and info["rgb"] is False and info["dimensions"] == [640, 512]
        assert s.mpp == pytest.approx(0.5)
        with pytest.raises(InputError, match="not an RGB brightfield slide"):
            s.read_region((0, 0), 0, (16, 16))
