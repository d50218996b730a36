"""OME-TIFF (several series, SubIFD pyramids) and OME-Zarr (NGFF v0.4 and v0.5, bioformats2raw layout) as slide
backends, on files the tests write with tifffile and ome-zarr-py (the maintained writers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medvl.errors import InputError
from medvl.io.slide import open_slide
from tests.pathology.synthetic_slides import he_scene

ome_zarr = pytest.importorskip("ome_zarr")


def _pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    out = [img]
    for _ in range(levels - 1):
        out.append(np.asarray(Image.fromarray(out[-1]).resize((out[-1].shape[1] // 2, out[-1].shape[0] // 2))))
    return out


def write_ome_tiff(path, img, mpp=0.25, unit="µm", levels=3, name="Case 0042 slide"):
    """A label, the slide (tiled, its pyramid in SubIFDs) and a macro as three OME images in one file."""
    import tifffile

    size = {} if mpp is None else {"PhysicalSizeX": mpp, "PhysicalSizeY": mpp, "PhysicalSizeXUnit": unit,
                                   "PhysicalSizeYUnit": unit}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(np.full((64, 96, 3), 200, np.uint8), photometric="rgb", metadata={"axes": "YXS", "Name": "label"})
        pyramid = _pyramid(img, levels)
        tw.write(pyramid[0], subifds=levels - 1, tile=(128, 128), photometric="rgb", compression="zlib",
                 metadata={"axes": "YXS", "Name": name, **size})
        for level in pyramid[1:]:
            tw.write(level, tile=(128, 128), photometric="rgb", compression="zlib", subfiletype=1)
        tw.write(np.full((100, 200, 3), 90, np.uint8), photometric="rgb", metadata={"axes": "YXS", "Name": "macro"})
    return path


@pytest.fixture(scope="module")
def scene():
    return he_scene(1024, 768, seed=5)


def test_ome_tiff_multi_series(tmp_path, scene):
    path = write_ome_tiff(tmp_path / "case.ome.tiff", scene)
    with open_slide(path) as slide:
        info = slide.info()
        assert slide.backend == "ome-tiff" and slide.slide_id == "case"
        assert info["level_dimensions"] == [[1024, 768], [512, 384], [256, 192]]
        assert slide.mpp == 0.25 and slide.mpp_source == "header"
        assert info["associated"] == ["label", "macro"] and "0042" not in json.dumps(info)
        np.testing.assert_array_equal(slide.read_region((256, 128), 0, (64, 32)), scene[128:160, 256:320])
        level1 = _pyramid(scene, 2)[1]
        np.testing.assert_array_equal(slide.read_region((512, 256), 1, (40, 20)), level1[128:148, 256:296])
        assert slide.associated_image("macro").shape == (100, 200, 3)
        edge = slide.read_region((1000, 750), 0, (64, 64))  # past the image: white, not garbage
        assert (edge[18:, :] == 255).all() and (edge[:, 24:] == 255).all()


def test_ome_tiff_units_and_missing_size(tmp_path, scene):
    with open_slide(write_ome_tiff(tmp_path / "nm.ome.tif", scene, mpp=500.0, unit="nm")) as slide:
        assert slide.mpp == pytest.approx(0.5)
    with open_slide(write_ome_tiff(tmp_path / "none.ome.tif", scene, mpp=None)) as slide:
        with pytest.raises(InputError, match="no microns-per-pixel value.*--slide-mpp"):
            slide.require_mpp()


def test_ome_tiff_fluorescence_refuses_rgb_reads(tmp_path):
    import tifffile

    path = tmp_path / "if.ome.tiff"
    tifffile.imwrite(path, np.zeros((4, 256, 256), np.uint16), ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    with open_slide(path) as slide:
        assert not slide.is_rgb and slide.info()["channels"] == 4
        with pytest.raises(InputError, match="not an RGB brightfield slide"):
            slide.read_region((0, 0), 0, (16, 16))


def _write_ngff(path, img, fmt, mpp=0.5):
    import zarr
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(np.moveaxis(img, 2, 0), root, scale_factors=(2, 4), axes="cyx", fmt=fmt,
                scale={"c": 1.0, "y": mpp, "x": mpp}, axes_units={"y": "micrometer", "x": "micrometer"})
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_multiscales(tmp_path, scene, version):
    from ome_zarr.format import FormatV04, FormatV05

    fmt = {"0.4": FormatV04(), "0.5": FormatV05()}[version]
    path = _write_ngff(tmp_path / "case.ome.zarr", scene, fmt)
    with open_slide(path) as slide:
        assert slide.backend == "ome-zarr" and slide.slide_id == "case"
        assert slide.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert slide.mpp == pytest.approx(0.5) and slide.level_downsamples == (1.0, 2.0, 4.0)
        np.testing.assert_array_equal(slide.read_region((256, 128), 0, (64, 32)), scene[128:160, 256:320])
        assert slide.thumbnail(256).shape == (192, 256, 3)


def test_ome_zarr_bioformats2raw_layout_picks_the_slide(tmp_path, scene):
    import zarr
    from ome_zarr.format import FormatV04

    root_path = tmp_path / "export.zarr"
    root = zarr.open_group(str(root_path), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    _write_ngff(root_path / "0", np.full((96, 128, 3), 200, np.uint8), FormatV04(), mpp=10.0)  # a label
    _write_ngff(root_path / "1", scene, FormatV04())
    with open_slide(root_path) as slide:
        assert slide.dimensions == (1024, 768) and slide.associated == ("series-0",)


def test_tiling_and_tissue_on_ome_files(tmp_path, scene):
    from ome_zarr.format import FormatV05

    from medvl.pathology.pipeline import SlideJob, tile_slide
    from medvl.pathology.tiling import TileConfig
    from medvl.pathology.tissue import TissueConfig

    tiff = write_ome_tiff(tmp_path / "a.ome.tiff", scene, mpp=0.5)
    zarr_path = _write_ngff(tmp_path / "b.ome.zarr", scene, FormatV05())
    records = [tile_slide(SlideJob(p.name, p), tmp_path, TileConfig(mpp=1.0, size=64), TissueConfig())
               for p in (tiff, zarr_path)]
    assert [r["status"] for r in records] == ["ok", "ok"] and records[0]["tiles"] == records[1]["tiles"] > 10


def test_folder_that_is_no_slide(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a readable slide"):
        open_slide(tmp_path / "empty")
